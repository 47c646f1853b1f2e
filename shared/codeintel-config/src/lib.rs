//! Layered configuration: built-in defaults, then a TOML file, then `CODEINTEL__SECTION__KEY`
//! environment variables, then command-line flags (applied by each binary through
//! [`Config::set`]). Every option is listed, with its default, in `docs/configuration.md`.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Longest `auth.tokens[].name`.
pub const MAX_TOKEN_NAME: usize = 64;

/// Environment variable naming the configuration file (also `--config` on every binary).
pub const CONFIG_FILE_ENV: &str = "CODEINTEL_CONFIG";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data: DataConfig,
    pub embed: EmbedConfig,
    pub vector: VectorConfig,
    pub lexical: LexicalConfig,
    pub hydrate: HydrateConfig,
    pub answer: AnswerConfig,
    pub index: IndexConfig,
    pub sparse: SparseConfig,
    pub models: ModelsConfig,
    pub mcp: McpConfig,
    pub telemetry: TelemetryConfig,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub up: UpConfig,
}

/// `codeintel up`, the one-host mesh.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpConfig {
    /// Give vector-svc and lexical-svc disjoint halves of the CPUs `up` may use (lexical-svc
    /// the lower half, vector-svc the rest), unless `vector.cpus` or `lexical.cpus` is set:
    /// their two query encoders then do not time-slice one core each, the embedding (the
    /// longest part of a hybrid query) keeps a core of its own. Needs at least 2 CPUs.
    pub split_encoder_cpus: bool,
}

impl Default for UpConfig {
    fn default() -> Self {
        Self { split_encoder_cpus: true }
    }
}

/// TLS for every gRPC server and the clients between the services (rustls). With `cert` and
/// `key`, each service serves TLS; with `ca` too, the services verify each other against it
/// and present `cert` as their client certificate (mutual TLS), and a server refuses a peer
/// without a valid client certificate unless `client_auth` is off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain this process presents (as server, and as client with `ca`).
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// PEM CA certificate(s) trusted for the servers this process calls and for client
    /// certificates; empty: clients trust no private CA and servers ask for no certificate.
    pub ca: PathBuf,
    /// With `ca`: refuse clients without a certificate signed by it (mutual TLS). Turn off on
    /// answer-svc when its users have no client certificates (bearer tokens then).
    pub client_auth: bool,
    /// The name expected in servers' certificates; empty: the host of each configured URL.
    pub domain: String,
    /// With `ca`: also refuse HTTP clients (metrics, ready, `codeintel models serve`) without a
    /// certificate signed by it. Off by default so that Prometheus and kubelet probes, which
    /// present no client certificate, can still scrape and probe over TLS.
    pub http_client_auth: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            ca: PathBuf::new(),
            client_auth: true,
            domain: String::new(),
            http_client_auth: false,
        }
    }
}

impl TlsConfig {
    /// Whether this process serves TLS.
    pub fn serves(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }

    /// Whether this process calls other services over TLS.
    pub fn calls(&self) -> bool {
        !self.ca.as_os_str().is_empty()
    }
}

/// Admission limits each service applies to its own RPCs (health and reflection are exempt):
/// past `max_concurrent` running and `max_queue` waiting, a request is refused at once with
/// RESOURCE_EXHAUSTED and a retry hint, never queued without bound.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// RPCs running at once in one process (an `Answer` counts until its stream ends).
    pub max_concurrent: usize,
    /// RPCs waiting for a slot; past it, refused at once.
    pub max_queue: usize,
    /// Longest wait for a slot, milliseconds (also capped by the request's own deadline).
    pub queue_wait_ms: u64,
    /// Largest request message a service decodes, bytes.
    pub max_message_bytes: usize,
    /// Largest request header list (metadata), bytes.
    pub max_header_bytes: u32,
    /// The retry hint sent with RESOURCE_EXHAUSTED (`grpc-retry-pushback-ms`), milliseconds.
    pub retry_after_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 8,
            max_queue: 16,
            queue_wait_ms: 250,
            max_message_bytes: 4 << 20,
            max_header_bytes: 16 << 10,
            retry_after_ms: 200,
        }
    }
}

/// Who may call: bearer tokens for answer-svc's clients (each may be limited to some repos and
/// a request rate), and one service token answer-svc presents to the backends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Client tokens answer-svc accepts, as SHA-256 hashes; none: no client authentication.
    pub tokens: Vec<TokenConfig>,
    /// A TOML file of more tokens (`[[tokens]]` tables like `auth.tokens`), read at start.
    pub tokens_file: PathBuf,
    /// The shared secret answer-svc sends to vector-, lexical- and hydrate-svc, which then
    /// refuse any caller without it. Empty: the backends accept any caller. Set it through
    /// `CODEINTEL__AUTH__SERVICE_TOKEN`, not in a file others can read.
    pub service_token: String,
}

/// One client token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Who holds it (logs, metrics, traces).
    pub name: String,
    /// Hex SHA-256 of the token (`codeintel token hash`); the token itself is never stored.
    pub sha256: String,
    /// Repos it may read; empty: all.
    pub repos: Vec<String>,
    /// Requests per second it may send (token bucket); 0: unlimited.
    pub rate_per_s: f64,
    /// Bucket size: requests it may send at once before the rate applies.
    pub burst: u32,
}

/// OpenTelemetry traces (every service).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/HTTP receiver (`http://collector:4318`); spans go to `<endpoint>/v1/traces`. Empty:
    /// no export (logs only).
    pub otlp_endpoint: String,
    /// Share of new traces sampled (a request that arrives inside a sampled trace is sampled).
    pub sample_ratio: f64,
    /// Spans are batched and sent this often, milliseconds (and at shutdown).
    pub export_interval_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { otlp_endpoint: String::new(), sample_ratio: 1.0, export_interval_ms: 5_000 }
    }
}

/// `codeintel mcp`: the MCP server for coding agents, a client of answer-svc.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Default size budget of one tool result, characters (a call's `max_chars` overrides it);
    /// whole lines are dropped past it, with a marker saying how many.
    pub max_chars: usize,
    /// Address of the streamable HTTP transport (`/mcp`) with `codeintel mcp --http`.
    pub http_addr: String,
    /// `Host` header values accepted over HTTP besides loopback names (DNS rebinding
    /// protection): the names clients use to reach a non-loopback `http_addr`.
    pub allowed_hosts: Vec<String>,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self { max_chars: 8000, http_addr: "127.0.0.1:8765".into(), allowed_hosts: Vec::new() }
    }
}

/// `codeintel models serve`: the local model server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Serve `/v1/chat/completions` from a local GGUF chat model.
    pub chat: bool,
    /// The GGUF file; empty means `<data.cache>/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf`.
    pub chat_gguf: PathBuf,
    /// Id the chat model is listed and answers under.
    pub chat_model_id: String,
    /// CPU threads for the model's matrix products (0 = one per core).
    pub threads: usize,
    /// How the chat model's weights are held: `f32` (dequantized when loaded: prompt
    /// processing about 4x faster, generation about 1.8x slower, 540 MB for SmolLM2-135M) or
    /// `quantized` (as stored in the GGUF).
    pub chat_weights: String,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            chat: true,
            chat_gguf: PathBuf::new(),
            chat_model_id: "SmolLM2-135M-Instruct".into(),
            threads: 0,
            chat_weights: "f32".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Root folder holding one sub-folder per indexed repository, or an object store URL
    /// (`s3://bucket/prefix`, `file:///path`) mirrored to `mirror`.
    pub root: PathBuf,
    /// Folder with the model files and native libraries that `make deps` fetches.
    pub cache: PathBuf,
    /// Local mirror of an object-store data root; empty = `<cache>/mirror/<url as a name>`.
    pub mirror: PathBuf,
    /// Before serving a version, each service checks the files it reads against the sha256
    /// its manifest recorded at publish, and refuses a damaged version (falling back to the
    /// previous one).
    pub verify_checksums: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedConfig {
    /// Model id recorded in manifests; must match between indexing and serving.
    pub model_id: String,
    /// Folder of the local model (config.json, tokenizer.json, model.safetensors); empty means
    /// `<data.cache>/models/all-MiniLM-L6-v2-code`, all-MiniLM-L6-v2 fine-tuned for code
    /// (`models/embed`, merged by `make fetch`).
    pub model_dir: PathBuf,
    /// OpenAI-compatible embeddings endpoint (`http://host:8000`); empty means the local model.
    pub url: String,
    /// Word-pieces kept per text (longer text is truncated).
    pub max_tokens: usize,
    /// Texts per forward pass of the local model.
    pub batch_size: usize,
    /// Texts per request to the remote endpoint.
    pub remote_batch_size: usize,
    /// Forward passes of the local model run side by side when indexing (query embedding in
    /// vector-svc uses 1).
    pub workers: usize,
    /// Request timeout for the remote endpoint, milliseconds.
    pub timeout_ms: u64,
    /// Also embed each definition's name view (its name as words and its signature, no body:
    /// `Chunk::name_text`) and index the normalised mean of the two vectors, so a question
    /// phrased like the definition's name finds it even when the body says little.
    pub name_view: bool,
    /// Query encodings kept per serving process (vector-svc's embeddings, lexical-svc's SPLADE
    /// terms), keyed by the query with whitespace normalised; 0 turns the cache off.
    pub query_cache_entries: usize,
    /// Threads the local query encoder of a serving process uses (vector-svc's embedder,
    /// lexical-svc's SPLADE encoder); 0 = every physical core. `RAYON_NUM_THREADS` or
    /// `CANDLE_NUM_THREADS` in the environment win.
    pub query_threads: usize,
    /// Engine of the local embedder for documents (indexing, `codeintel models serve`):
    /// `onnx-mixed` by default (ONNX Runtime over the model folder's `embed.mixed.onnx`, made
    /// by `make fetch`: int8 weights but each layer's feed-forward output projection, dev-set
    /// quality that of f32), `onnx` (`embed.onnx`: the same vectors as candle within 1e-4),
    /// `onnx-int8` (`embed.int8.onnx`, every product int8: vectors within cosine 0.95 of f32,
    /// dev MRR@10 0.016 lower) or `candle` (the safetensors weights).
    pub runtime: String,
    /// Engine of vector-svc's query encoder, the same choices; `onnx-int8` by default (a query
    /// about 2x faster, dev-set quality unchanged against f32 documents).
    pub query_runtime: String,
    /// The ONNX Runtime shared library; empty means
    /// `<data.cache>/lib/libonnxruntime.so.1.32.0` (from the PyPI onnxruntime wheel).
    pub onnx_runtime: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// gRPC listen address.
    pub addr: String,
    /// Prometheus `/metrics` (and `/ready`) listen address; empty disables it.
    pub metrics_addr: String,
    /// How often the service looks for a new published manifest version, milliseconds.
    pub reload_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HydrateConfig {
    pub addr: String,
    pub metrics_addr: String,
    pub reload_ms: u64,
    /// Hold each served version's live chunk rows in memory (Arrow, indexed by chunk id) and
    /// answer hydrations from there; DuckDB stays the engine of navigation queries. Off: every
    /// hydration reads the Parquet segments through DuckDB.
    pub in_memory: bool,
}

impl Default for HydrateConfig {
    fn default() -> Self {
        let s = ServiceConfig::local(50054, 9104);
        Self { addr: s.addr, metrics_addr: s.metrics_addr, reload_ms: s.reload_ms, in_memory: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VectorConfig {
    pub addr: String,
    pub metrics_addr: String,
    pub reload_ms: u64,
    /// Repo-name globs this instance serves (a shard); empty serves every repo in the data root.
    #[serde(deserialize_with = "list_or_commas")]
    pub repos: Vec<String>,
    /// Below this many vectors the primary is exact (`Flat`); at or above it, a trained IVF index.
    pub flat_threshold: usize,
    /// Inverted lists of a trained primary; 0 picks about sqrt(vectors), a power of two.
    pub nlist: usize,
    /// Lists probed per query; 0 picks nlist/8 (at least 8).
    pub nprobe: usize,
    /// Codes of a trained primary: `sq8` (1 byte per dimension) or `pq` (dim/8 bytes).
    pub quantizer: String,
    /// A trained primary fetches this many candidates per wanted result and re-scores them
    /// exactly from the raw vectors on disk; 0 or 1 turns re-scoring off.
    pub refine: usize,
    /// Where dense search runs: `auto` (the GPU when the binary was built with the `gpu` feature
    /// and one is usable, else the CPU), `gpu` (the GPU; without one, the CPU, reported as
    /// degraded) or `cpu`.
    pub device: String,
    /// CUDA device ordinal used when searching on the GPU.
    pub gpu_ordinal: usize,
    /// A repo's live vectors are held on the GPU (exact search) when they take at most this
    /// share of the GPU's free memory; a larger repo is searched on the CPU (degraded).
    pub gpu_memory_fraction: f64,
    /// CPUs the process runs on (`0-3,8`, as `taskset -c` writes them); empty: every CPU it
    /// was started with.
    pub cpus: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LexicalConfig {
    pub addr: String,
    pub metrics_addr: String,
    pub reload_ms: u64,
    /// Repo-name globs this instance serves (a shard); empty serves every repo in the data root.
    #[serde(deserialize_with = "list_or_commas")]
    pub repos: Vec<String>,
    /// BM25 weight of a match in the definition's qualified name.
    pub symbol_boost: f32,
    /// BM25 weight of a match in the file path.
    pub path_boost: f32,
    /// BM25 weight of a match in the code (with its parent and signature).
    pub body_boost: f32,
    /// BM25 weight of a match in the definition's documentation (doc comments, docstrings).
    pub doc_boost: f32,
    /// BM25 term-frequency saturation.
    pub bm25_k1: f32,
    /// BM25 length normalisation (0 = none, 1 = full).
    pub bm25_b: f32,
    /// Weight of a query word's other inflections found in the index (`requires` also matches
    /// `require`), relative to the word as typed; 0 turns the expansion off.
    pub word_forms_weight: f32,
    /// CPUs the process runs on (`0-3,8`, as `taskset -c` writes them); empty: every CPU it
    /// was started with.
    pub cpus: String,
}

impl Default for LexicalConfig {
    fn default() -> Self {
        let s = ServiceConfig::local(50053, 9103);
        Self {
            addr: s.addr,
            metrics_addr: s.metrics_addr,
            reload_ms: s.reload_ms,
            repos: Vec::new(),
            symbol_boost: 1.0,
            path_boost: 0.3,
            body_boost: 1.0,
            doc_boost: 0.0,
            bm25_k1: 1.2,
            bm25_b: 0.75,
            word_forms_weight: 0.3,
            cpus: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerConfig {
    pub addr: String,
    pub metrics_addr: String,
    /// Where answer-svc reaches the other services: one or more `http://host:port` endpoints,
    /// comma-separated; a host name is resolved to every address it has (a headless Service)
    /// and re-resolved every `discovery_ms`.
    pub vector_url: String,
    pub lexical_url: String,
    pub hydrate_url: String,
    /// How often endpoints are re-resolved and probed (`Info` / health), milliseconds.
    pub discovery_ms: u64,
    /// How long an endpoint whose call failed is left out before it is tried again (doubling
    /// while it keeps failing, at most 30 s; a successful probe brings it back sooner), ms.
    pub eject_ms: u64,
    /// How the retrievers' lists are fused: `dbsf` (distribution-based score fusion: each
    /// list's scores normalised by its mean and spread, then a weighted sum) or `rrf`
    /// (weighted reciprocal rank fusion with `rrf_k`).
    pub fusion: String,
    /// Reciprocal rank fusion constant k (with `fusion = "rrf"`).
    pub rrf_k: f32,
    /// With `fusion = "dbsf"`: how many of each retriever's first scores give the mean and
    /// spread its scores are normalised by (0: the whole list of `candidates`).
    pub dbsf_depth: u32,
    /// Fusion weight of the dense retriever for natural-language queries that describe code
    /// (`Returns the ...`, the form of a doc comment).
    pub dense_weight: f32,
    /// Fusion weight of the dense retriever for natural-language questions (`how does ...?`,
    /// `codeintel_core::query::is_question`); lexical and sparse keep their weights.
    pub question_dense_weight: f32,
    /// RRF weight of the lexical retriever.
    pub lexical_weight: f32,
    /// RRF weight of the learned sparse (SPLADE) retriever; 0 leaves it out of hybrid retrieval
    /// (it stays available as the SPARSE mode).
    pub sparse_weight: f32,
    /// Candidates asked from each retriever.
    pub candidates: u32,
    /// Route name lookups (`class Foo`, `Foo::bar`, `where is foo defined`) to an exact symbol
    /// match first.
    pub identifier_routing: bool,
    /// Fusion weights and candidates per retriever for name lookups (the `identifier` route);
    /// a weight of 0 skips that retriever there.
    pub identifier_dense_weight: f32,
    pub identifier_lexical_weight: f32,
    pub identifier_sparse_weight: f32,
    pub identifier_candidates: u32,
    /// Places a test, a prose hit (docs, READMEs, config files) or a top-level line window moves
    /// down for a natural-language query, unless it names tests or docs; 0 keeps the fused
    /// order. Such queries hydrate this many candidates beyond `top_k`, so the definitions that
    /// move up are there.
    pub non_code_demotion: u32,
    /// Places a declaration (struct, enum, trait, interface, constant, type alias, module) moves
    /// down for a question about behaviour ("how does ...", "if I ..."; not "what is X?" nor one
    /// that names a struct, type or field); 0 keeps the order.
    pub declaration_demotion: u32,
    /// A question whose subject names a folder of two words or more ("how does the answer
    /// service fuse ...?" -> `services/answer-svc`) is searched again within that folder, the
    /// subject replaced by `it`, and those hits come first (only when the request's scope has
    /// no include globs of its own; `codeintel_core::subject::link` says which folders link).
    pub subject_scope: bool,
    /// Per-retriever timeout, milliseconds (also capped by the request budget).
    pub retriever_timeout_ms: u64,
    /// Default whole-request budget, milliseconds.
    pub time_budget_ms: u64,
    /// OpenAI-compatible chat server (`http://host:8000`); empty means extractive answers.
    pub llm_url: String,
    /// Chat model name sent to the server.
    pub llm_model: String,
    /// Most tokens the model may generate.
    pub llm_max_tokens: u32,
    /// Characters of source code put into the prompt, all sources together.
    pub prompt_chars: usize,
    /// Base URL of a rerank server (`POST /rerank`, else `POST /score`, as vLLM serves them);
    /// empty: no reranking (fusion order).
    pub rerank_url: String,
    pub rerank_model: String,
    /// Fused candidates sent to the reranker when a request does not say (`rerank_top_n`).
    pub rerank_top_n: u32,
    /// Most of the budget the rerank stage may use, milliseconds.
    pub rerank_timeout_ms: u64,
    /// With no `rerank_url`: rerank with the built-in cross-encoder (trained on public code,
    /// run on this process's CPU over the SPLADE model folder's base weights).
    pub local_rerank: bool,
    /// Trained cross-encoder weights (`rerank.safetensors`, with its `rerank.json` beside it);
    /// empty: the weights built into the binary.
    pub local_rerank_weights: PathBuf,
    /// Fused candidates the local cross-encoder scores when a request does not say.
    pub local_rerank_top_n: u32,
    /// How much the fusion order still counts after local reranking: a candidate's score is
    /// its cross-encoder score standardised over the candidates, minus this times the natural
    /// log of its fusion rank (1 for the first). 0 orders by the cross-encoder alone.
    pub local_rerank_fusion_weight: f32,
    /// Redis holding session scopes for every answer-svc process (`redis://host:port/db`);
    /// empty keeps them in this process only.
    pub redis_url: String,
    /// How long a session scope lives after its last `SetScope`, seconds (in Redis, or in
    /// this process without it).
    pub session_ttl_s: u64,
    /// Most sessions the in-process store holds (without Redis); the oldest set goes first.
    pub session_max_entries: usize,
    /// Most bytes of scopes the in-process store holds (without Redis).
    pub session_max_bytes: usize,
    /// Session scopes cached in process (LRU) in front of Redis.
    pub scope_cache_entries: usize,
    /// How long a cached scope is served without asking Redis, milliseconds.
    pub scope_cache_ttl_ms: u64,
    /// How long `SetScope` waits for the other processes to drop their cached copy, ms.
    pub scope_invalidation_timeout_ms: u64,
    /// Write one AnswerTrace row per answer to Parquet files.
    pub traces: bool,
    /// Where trace files go; empty means `<data.root>/traces`.
    pub trace_dir: PathBuf,
    /// Rows per trace file (a file is also written every `trace_flush_ms`).
    pub trace_batch_rows: usize,
    pub trace_flush_ms: u64,
}

/// Learned sparse retrieval (SPLADE): computed at index time, searched by lexical-svc.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SparseConfig {
    /// Compute SPLADE term weights when indexing (lexical-svc serves them when present).
    pub enabled: bool,
    /// Model id recorded in manifests; sparse vectors are reused only under the same id.
    pub model_id: String,
    /// Folder of the masked-LM (config.json, tokenizer.json, model.safetensors); empty means
    /// `<data.cache>/models/splade-tiny`.
    pub model_dir: PathBuf,
    /// Word-pieces kept per text.
    pub max_tokens: usize,
    /// Heaviest terms kept per document (0 = all positive ones).
    pub doc_max_terms: usize,
    /// Heaviest terms kept per query (0 = all).
    pub query_max_terms: usize,
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Forward passes run side by side when indexing (and, on ONNX Runtime, queries encoded
    /// at once by lexical-svc).
    pub workers: usize,
    /// Engine of the SPLADE encoder for documents: `onnx-int8` by default (`splade.int8.onnx`
    /// in the model folder), `onnx` (`splade.onnx`), `onnx-mixed` (`splade.mixed.onnx`) or
    /// `candle`; the library is `embed.onnx_runtime`.
    pub runtime: String,
    /// Engine of lexical-svc's SPLADE query encoder, the same choices (`onnx-int8` by default).
    pub query_runtime: String,
}

impl Default for SparseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            model_id: "splade-tiny".into(),
            model_dir: PathBuf::new(),
            max_tokens: 256,
            doc_max_terms: 256,
            query_max_terms: 64,
            batch_size: 8,
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            runtime: "onnx-int8".into(),
            query_runtime: "onnx-int8".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Files larger than this are skipped, bytes.
    pub max_file_bytes: u64,
    /// Definitions longer than this are split at statement boundaries, lines.
    pub max_chunk_lines: usize,
    /// Window size of the fallback line chunker, lines.
    pub window_lines: usize,
    /// Published versions kept per repo (the current one included); older ones are deleted.
    pub keep_versions: usize,
    /// How long a replaced version stays on disk for processes still serving it, milliseconds.
    pub gc_grace_ms: u64,
    /// Compact (retrain the primary from every live vector) once the secondary holds more than
    /// this fraction of the primary's vectors.
    pub compact_ratio: f64,
    /// ... and more than this many vectors (a small Flat secondary costs nothing to search).
    pub compact_min_vectors: u64,
    /// Leave out files named like or holding a secret (private keys, cloud and API tokens,
    /// credential files, hard-coded passwords: `codeintel_chunk::secrets`), counted and listed.
    pub skip_secrets: bool,
    /// More regular expressions (Rust `regex` syntax); a file whose text matches one is left out
    /// as a secret too.
    #[serde(deserialize_with = "one_or_list")]
    pub secret_patterns_extra: Vec<String>,
    /// Globs of repo-relative paths the secret rules do not apply to (`tests/fixtures/**`).
    #[serde(deserialize_with = "list_or_commas")]
    pub allow_secret_paths: Vec<String>,
}

impl Default for DataConfig {
    fn default() -> Self {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        Self {
            root: home.join(".codeintel").join("data"),
            cache: PathBuf::from("/var/cache/codeintel"),
            mirror: PathBuf::new(),
            verify_checksums: true,
        }
    }
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            model_id: "codeintel/all-MiniLM-L6-v2-code".into(),
            model_dir: PathBuf::new(),
            url: String::new(),
            max_tokens: 256,
            batch_size: 8,
            remote_batch_size: 64,
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            timeout_ms: 30_000,
            name_view: true,
            query_cache_entries: 4096,
            query_threads: 1,
            runtime: "onnx-mixed".into(),
            query_runtime: "onnx-int8".into(),
            onnx_runtime: PathBuf::new(),
        }
    }
}

impl ServiceConfig {
    fn local(port: u16, metrics_port: u16) -> Self {
        Self { addr: format!("127.0.0.1:{port}"), metrics_addr: format!("127.0.0.1:{metrics_port}"), reload_ms: 2_000 }
    }
}

impl Default for VectorConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:50052".into(),
            metrics_addr: "127.0.0.1:9102".into(),
            reload_ms: 2_000,
            repos: Vec::new(),
            flat_threshold: 50_000,
            nlist: 0,
            nprobe: 0,
            quantizer: "sq8".into(),
            refine: 4,
            device: "auto".into(),
            gpu_ordinal: 0,
            gpu_memory_fraction: 0.5,
            cpus: String::new(),
        }
    }
}

/// A list given as a TOML array or as one comma-separated string (what an environment variable
/// or `--set` can carry): `["a*", "b"]` or `"a*,b"`.
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Commas(String),
    }
    Ok(match Form::deserialize(d)? {
        Form::List(v) => v,
        Form::Commas(s) => s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect(),
    })
}

/// A list given as a TOML array, or one item as a string (what an environment variable or `--set`
/// can carry), for items that may hold commas themselves (regular expressions).
fn one_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        One(String),
    }
    Ok(match Form::deserialize(d)? {
        Form::List(v) => v,
        Form::One(s) if s.trim().is_empty() => Vec::new(),
        Form::One(s) => vec![s],
    })
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self::local(0, 0)
    }
}

impl Default for AnswerConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:50051".into(),
            metrics_addr: "127.0.0.1:9101".into(),
            vector_url: "http://127.0.0.1:50052".into(),
            lexical_url: "http://127.0.0.1:50053".into(),
            hydrate_url: "http://127.0.0.1:50054".into(),
            discovery_ms: 2_000,
            eject_ms: 2_000,
            fusion: "dbsf".into(),
            rrf_k: 60.0,
            dbsf_depth: 30,
            dense_weight: 3.0,
            question_dense_weight: 1.0,
            lexical_weight: 1.0,
            sparse_weight: 0.5,
            candidates: 100,
            identifier_routing: true,
            identifier_dense_weight: 1.0,
            identifier_lexical_weight: 1.0,
            identifier_sparse_weight: 0.5,
            identifier_candidates: 50,
            non_code_demotion: 40,
            declaration_demotion: 10,
            subject_scope: true,
            retriever_timeout_ms: 1_500,
            time_budget_ms: 2_000,
            llm_url: String::new(),
            llm_model: "default".into(),
            llm_max_tokens: 512,
            prompt_chars: 12_000,
            rerank_url: String::new(),
            rerank_model: "default".into(),
            rerank_top_n: 50,
            rerank_timeout_ms: 600,
            local_rerank: false,
            local_rerank_weights: PathBuf::new(),
            local_rerank_top_n: 20,
            local_rerank_fusion_weight: 1.0,
            redis_url: String::new(),
            session_ttl_s: 3_600,
            session_max_entries: 10_000,
            session_max_bytes: 64 << 20,
            scope_cache_entries: 256,
            scope_cache_ttl_ms: 5_000,
            scope_invalidation_timeout_ms: 250,
            traces: true,
            trace_dir: PathBuf::new(),
            trace_batch_rows: 256,
            trace_flush_ms: 10_000,
        }
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 1 << 20,
            max_chunk_lines: 120,
            window_lines: 40,
            keep_versions: 2,
            gc_grace_ms: 600_000,
            compact_ratio: 0.05,
            compact_min_vectors: 1_000,
            skip_secrets: true,
            secret_patterns_extra: Vec::new(),
            allow_secret_paths: Vec::new(),
        }
    }
}

impl Config {
    /// Defaults, then `file` (or `$CODEINTEL_CONFIG`), then `CODEINTEL__SECTION__KEY` variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        let file = file.map(Path::to_path_buf).or_else(|| std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from));
        if let Some(f) = file {
            anyhow::ensure!(f.is_file(), "config file {} does not exist", f.display());
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("CODEINTEL__").split("__").lowercase(true));
        let cfg: Config = fig.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Overrides one option by its dotted key (`answer.rrf_k`), as a flag does.
    pub fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let fig = Figment::from(Serialized::defaults(self.clone())).merge(Serialized::global(key, toml_value(value)));
        *self = fig.extract().map_err(|e| anyhow::anyhow!("invalid value for {key}: {e}"))?;
        self.validate()
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (200..=1_000_000).contains(&self.mcp.max_chars),
            "mcp.max_chars must be in 200..=1000000, got {}",
            self.mcp.max_chars
        );
        let lim = &self.limits;
        anyhow::ensure!(lim.max_concurrent >= 1, "limits.max_concurrent must be at least 1");
        anyhow::ensure!(lim.max_message_bytes >= 1024, "limits.max_message_bytes must be at least 1024");
        anyhow::ensure!(lim.max_header_bytes >= 1024, "limits.max_header_bytes must be at least 1024");
        for (i, t) in self.auth.tokens.iter().enumerate() {
            anyhow::ensure!(
                t.sha256.len() == 64 && t.sha256.chars().all(|c| c.is_ascii_hexdigit()),
                "auth.tokens[{i}] ({:?}): sha256 must be 64 hex digits (`codeintel token hash` prints it)",
                t.name
            );
            anyhow::ensure!(
                !t.name.is_empty() && t.name.len() <= MAX_TOKEN_NAME && !t.name.contains('/'),
                "auth.tokens[{i}]: name it with 1 to {MAX_TOKEN_NAME} characters and no `/` (`name = \"ci\"`)"
            );
            anyhow::ensure!(t.rate_per_s >= 0.0, "auth.tokens[{i}] ({:?}): rate_per_s must not be negative", t.name);
        }
        anyhow::ensure!(
            matches!(self.answer.fusion.as_str(), "dbsf" | "rrf"),
            "answer.fusion must be `dbsf` or `rrf`, got {:?}",
            self.answer.fusion
        );
        anyhow::ensure!(self.answer.rrf_k > 0.0, "answer.rrf_k must be positive, got {}", self.answer.rrf_k);
        anyhow::ensure!(
            self.answer.dense_weight >= 0.0
                && self.answer.question_dense_weight >= 0.0
                && self.answer.lexical_weight >= 0.0
                && self.answer.sparse_weight >= 0.0,
            "answer.dense_weight, answer.question_dense_weight, answer.lexical_weight and answer.sparse_weight must not be negative"
        );
        anyhow::ensure!((1..=1000).contains(&self.answer.candidates), "answer.candidates must be in 1..=1000");
        let a = &self.answer;
        anyhow::ensure!(
            (1..=1000).contains(&a.identifier_candidates),
            "answer.identifier_candidates must be in 1..=1000"
        );
        anyhow::ensure!(
            [a.identifier_dense_weight, a.identifier_lexical_weight, a.identifier_sparse_weight]
                .iter()
                .all(|w| *w >= 0.0)
                && a.identifier_dense_weight + a.identifier_lexical_weight + a.identifier_sparse_weight > 0.0,
            "answer.identifier_*_weight must not be negative, and one must be positive"
        );
        anyhow::ensure!(
            a.dense_weight + a.lexical_weight + a.sparse_weight > 0.0,
            "one of answer.dense_weight, lexical_weight, sparse_weight must be positive"
        );
        let l = &self.lexical;
        anyhow::ensure!(
            l.symbol_boost >= 0.0 && l.path_boost >= 0.0 && l.body_boost >= 0.0 && l.doc_boost >= 0.0,
            "lexical boosts must not be negative"
        );
        anyhow::ensure!(
            l.bm25_k1 >= 0.0 && (0.0..=1.0).contains(&l.bm25_b),
            "lexical.bm25_k1 must not be negative and lexical.bm25_b must be within 0..=1"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&l.word_forms_weight),
            "lexical.word_forms_weight must be within 0..=1 (0 = off)"
        );
        anyhow::ensure!(
            self.embed.batch_size > 0 && self.embed.remote_batch_size > 0,
            "embed.batch_size and embed.remote_batch_size must be positive"
        );
        anyhow::ensure!(self.embed.max_tokens >= 8, "embed.max_tokens must be at least 8");
        anyhow::ensure!(
            self.sparse.max_tokens >= 8 && self.sparse.batch_size > 0,
            "sparse.max_tokens must be at least 8 and sparse.batch_size positive"
        );
        anyhow::ensure!(self.index.max_chunk_lines >= 10, "index.max_chunk_lines must be at least 10");
        anyhow::ensure!(self.index.window_lines >= 5, "index.window_lines must be at least 5");
        anyhow::ensure!(self.index.keep_versions >= 1, "index.keep_versions must be at least 1");
        anyhow::ensure!(
            self.index.compact_ratio > 0.0,
            "index.compact_ratio must be positive, got {}",
            self.index.compact_ratio
        );
        for p in &self.index.secret_patterns_extra {
            if let Err(e) = regex::Regex::new(p) {
                anyhow::bail!("index.secret_patterns_extra: {p:?} is not a valid regular expression: {e}");
            }
        }
        for g in &self.index.allow_secret_paths {
            if let Err(e) = globset::Glob::new(g) {
                anyhow::bail!("index.allow_secret_paths: {g:?} is not a valid glob: {e}");
            }
        }
        anyhow::ensure!(
            matches!(self.vector.quantizer.as_str(), "sq8" | "pq"),
            "vector.quantizer must be `sq8` or `pq`, got {:?}",
            self.vector.quantizer
        );
        anyhow::ensure!(self.vector.flat_threshold >= 1, "vector.flat_threshold must be at least 1");
        anyhow::ensure!(
            matches!(self.vector.device.as_str(), "auto" | "gpu" | "cpu"),
            "vector.device must be `auto`, `gpu` or `cpu`, got {:?}",
            self.vector.device
        );
        anyhow::ensure!(
            self.vector.gpu_memory_fraction > 0.0 && self.vector.gpu_memory_fraction <= 1.0,
            "vector.gpu_memory_fraction must be within (0, 1], got {}",
            self.vector.gpu_memory_fraction
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.telemetry.sample_ratio),
            "telemetry.sample_ratio must be within 0..=1, got {}",
            self.telemetry.sample_ratio
        );
        anyhow::ensure!(
            matches!(self.models.chat_weights.as_str(), "f32" | "quantized"),
            "models.chat_weights must be `f32` or `quantized`, got {:?}",
            self.models.chat_weights
        );
        Ok(())
    }

    pub fn chat_gguf(&self) -> PathBuf {
        if self.models.chat_gguf.as_os_str().is_empty() {
            self.data.cache.join("models").join("smollm2-135m").join("SmolLM2-135M-Instruct.Q4_1.gguf")
        } else {
            self.models.chat_gguf.clone()
        }
    }

    pub fn sparse_model_dir(&self) -> PathBuf {
        if self.sparse.model_dir.as_os_str().is_empty() {
            self.data.cache.join("models").join("splade-tiny")
        } else {
            self.sparse.model_dir.clone()
        }
    }

    pub fn onnx_runtime(&self) -> PathBuf {
        if self.embed.onnx_runtime.as_os_str().is_empty() {
            self.data.cache.join("lib").join("libonnxruntime.so.1.32.0")
        } else {
            self.embed.onnx_runtime.clone()
        }
    }

    pub fn model_dir(&self) -> PathBuf {
        if self.embed.model_dir.as_os_str().is_empty() {
            self.data.cache.join("models").join("all-MiniLM-L6-v2-code")
        } else {
            self.embed.model_dir.clone()
        }
    }
}

/// Parses a flag value as TOML (numbers, booleans) and falls back to a plain string.
fn toml_value(v: &str) -> figment::value::Value {
    let doc = format!("v = {v}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => {
            let val = t.remove("v").unwrap_or(toml::Value::String(v.into()));
            figment::value::Value::serialize(val).unwrap_or_else(|_| v.into())
        }
        Err(_) => v.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail signature
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[answer]\nrrf_k = 10.0\ncandidates = 20\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("CODEINTEL__ANSWER__CANDIDATES", "30");
            let mut cfg = Config::load(Some(&file)).unwrap();
            assert_eq!(cfg.answer.rrf_k, 10.0, "file overrides default");
            assert_eq!(cfg.answer.candidates, 30, "env overrides file");
            cfg.set("answer.candidates", "40").unwrap();
            assert_eq!(cfg.answer.candidates, 40, "flag overrides env");
            cfg.set("vector.addr", "127.0.0.1:7000").unwrap();
            assert_eq!(cfg.vector.addr, "127.0.0.1:7000");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[answer]\nrrf_kk = 10.0\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("rrf_kk"), "{err}");
        let mut cfg = Config::default();
        assert!(cfg.set("answer.rrf_k", "-1").is_err());
        assert!(cfg.set("answer.fusion", "linear").unwrap_err().to_string().contains("dbsf"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail signature
    fn shard_globs_come_as_a_toml_list_or_a_comma_separated_string() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[vector]\nrepos = [\"team-*\", \"core\"]\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("CODEINTEL__LEXICAL__REPOS", "team-*, core");
            let mut cfg = Config::load(Some(&file)).unwrap();
            assert_eq!(cfg.vector.repos, ["team-*", "core"]);
            assert_eq!(cfg.lexical.repos, ["team-*", "core"]);
            cfg.set("vector.repos", "a,b").unwrap();
            assert_eq!(cfg.vector.repos, ["a", "b"]);
            Ok(())
        });
        assert!(Config::default().vector.repos.is_empty(), "by default a service serves every repo");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail signature
    fn secret_options_default_on_take_lists_and_refuse_bad_patterns() {
        let d = Config::default();
        assert!(d.index.skip_secrets, "secrets are skipped by default");
        assert!(d.index.secret_patterns_extra.is_empty() && d.index.allow_secret_paths.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[index]\nsecret_patterns_extra = [\"ACME-[0-9]{8}\", \"x{2,}\"]\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("CODEINTEL__INDEX__ALLOW_SECRET_PATHS", "tests/fixtures/**, docs/*.pem");
            jail.set_env("CODEINTEL__INDEX__SKIP_SECRETS", "false");
            let mut cfg = Config::load(Some(&file)).unwrap();
            assert_eq!(cfg.index.secret_patterns_extra, ["ACME-[0-9]{8}", "x{2,}"]);
            assert_eq!(cfg.index.allow_secret_paths, ["tests/fixtures/**", "docs/*.pem"]);
            assert!(!cfg.index.skip_secrets);
            // One pattern from a flag, commas and all.
            cfg.set("index.secret_patterns_extra", "TOKEN-[a-z]{4,8}").unwrap();
            assert_eq!(cfg.index.secret_patterns_extra, ["TOKEN-[a-z]{4,8}"]);
            Ok(())
        });
        let mut cfg = Config::default();
        let err = cfg.set("index.secret_patterns_extra", "(unclosed").unwrap_err().to_string();
        assert!(err.contains("index.secret_patterns_extra") && err.contains("(unclosed"), "{err}");
        let err = Config::default().set("index.allow_secret_paths", "a/[").unwrap_err().to_string();
        assert!(err.contains("index.allow_secret_paths") && err.contains("a/["), "{err}");
    }
}
