//! The `codeintel` command.

use codeintel::{index, up};

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use codeintel_config::Config;
use codeintel_core::proto::v1::answer_event::Event;
use codeintel_core::proto::v1::{AnswerRequest, Scope, SearchMode, SearchRequest, SymbolRequest};
use codeintel_index::remote::{Remote, RemoteError};

#[derive(Parser)]
#[command(name = "codeintel", version, about = "Index code repositories and answer questions about them")]
struct Cli {
    /// TOML configuration file (also $CODEINTEL_CONFIG).
    #[arg(long, global = true, env = codeintel_config::CONFIG_FILE_ENV)]
    config: Option<PathBuf>,
    /// Data root holding the indexed repos (overrides data.root).
    #[arg(long, global = true)]
    data_root: Option<PathBuf>,
    /// Any option by its dotted key, e.g. `--set answer.rrf_k=30`; repeatable.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Hybrid,
    Dense,
    Lexical,
    /// Learned sparse (SPLADE) only.
    Sparse,
}

impl From<Mode> for SearchMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Hybrid => SearchMode::Hybrid,
            Mode::Dense => SearchMode::Dense,
            Mode::Lexical => SearchMode::Lexical,
            Mode::Sparse => SearchMode::Sparse,
        }
    }
}

#[derive(clap::Args, Clone, Default)]
struct ScopeArgs {
    /// Restrict to these repos (repeatable).
    #[arg(long = "repo-scope", value_name = "REPO")]
    repos: Vec<String>,
    /// Only paths matching these globs (repeatable).
    #[arg(long = "include")]
    include: Vec<String>,
    /// Skip paths matching these globs (repeatable).
    #[arg(long = "exclude")]
    exclude: Vec<String>,
    /// Only these languages (repeatable).
    #[arg(long = "lang")]
    languages: Vec<String>,
}

impl ScopeArgs {
    fn scope(&self) -> Option<Scope> {
        let s = Scope {
            repos: self.repos.clone(),
            include_globs: self.include.clone(),
            exclude_globs: self.exclude.clone(),
            languages: self.languages.clone(),
        };
        (s != Scope::default()).then_some(s)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Index a repository (a new published version of it).
    Index {
        /// Folder to index.
        path: PathBuf,
        /// Name of the repo in the data root.
        #[arg(long)]
        repo: String,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// Rebuild every store from scratch instead of updating only the changed files.
        #[arg(long)]
        full: bool,
        /// Fail at once if another indexer is writing this repo, instead of waiting for it.
        #[arg(long)]
        no_wait: bool,
        /// Index this commit (a branch, tag, commit id or any `git rev-parse` spelling) of the git
        /// repository holding PATH, read from its object database: no checkout, the work tree is
        /// not read.
        #[arg(long, value_name = "REV")]
        rev: Option<String>,
    },
    /// Fold a repo's secondary vector index and tombstones into a new, retrained primary.
    Compact {
        #[arg(long)]
        repo: String,
        #[arg(long)]
        quiet: bool,
    },
    /// Start the whole mesh on this host and restart a service that dies; Ctrl-C stops it.
    Up,
    /// Ask a question; the answer streams with `path:start-end` citations.
    Ask {
        question: String,
        #[arg(long, default_value_t = 8)]
        top_k: u32,
        #[arg(long, default_value_t = 20_000)]
        time_budget_ms: u32,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Retrieve ranked code for a query.
    Search {
        query: String,
        #[arg(long, value_enum, default_value = "hybrid")]
        mode: Mode,
        #[arg(long, default_value_t = 10)]
        top_k: u32,
        /// Print hits as JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Rerank the fused candidates (answer.rerank_url, else the local cross-encoder where
        /// answer.local_rerank is on).
        #[arg(long)]
        rerank: bool,
    },
    /// Where a symbol is defined (`parse`, `Parser.parse`, `Command::new`).
    Defs {
        symbol: String,
        #[arg(long)]
        repo: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Where a symbol is used: calls, type uses, imports, macro uses, surest first.
    Refs {
        symbol: String,
        #[arg(long)]
        repo: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        /// The callers view: the definitions that call the symbol, each with its call lines.
        #[arg(long)]
        callers: bool,
    },
    /// The MCP server for coding agents (tools: search_code, ask, read_code, find_definition,
    /// find_references, find_callers, list_symbols, list_repos, index_status), over stdio; a
    /// client of the running mesh.
    Mcp {
        /// Serve streamable HTTP at `/mcp` on `mcp.http_addr` instead of stdio.
        #[arg(long)]
        http: bool,
        /// Address for `--http` (overrides `mcp.http_addr`).
        #[arg(long)]
        addr: Option<String>,
        /// Default size budget of a tool result in characters (overrides `mcp.max_chars`).
        #[arg(long)]
        max_chars: Option<usize>,
    },
    /// Local models over HTTP in vLLM's shapes (embeddings, score, rerank, chat).
    Models {
        #[command(subcommand)]
        what: ModelsCmd,
    },
    /// Measure the index lifecycle and the running mesh (see `docs/benchmarks.md`); prints JSON
    /// (`load`: a table).
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// Build the training sets of the retrieval models (`scripts/train/`, issue 19).
    Train {
        #[command(subcommand)]
        what: TrainCmd,
    },
    /// Client tokens for `auth.tokens`: `new` prints a random token and its hash, `hash` the
    /// hash of the token in `CODEINTEL_TOKEN` (or read from stdin).
    Token {
        #[command(subcommand)]
        what: TokenCmd,
    },
    /// Check a service's gRPC health (`grpc.health.v1`); exit 0 when SERVING, 1 when not, 2
    /// when nothing answers. The container healthcheck.
    Health {
        /// `host:port` of any CodeIntel service.
        addr: String,
        /// Ask about one gRPC service (`codeintel.v1.VectorService`, ...); empty = the server.
        #[arg(long, default_value = "")]
        service: String,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Run every query of a benchmark file and write the results file `score.py` reads.
    Eval {
        /// Queries in JSON lines (`id`, `query`).
        queries: PathBuf,
        #[arg(long, value_enum, default_value = "hybrid")]
        mode: Mode,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 10)]
        top_k: u32,
        /// Rerank the fused candidates (answer.rerank_url, else the local cross-encoder where
        /// answer.local_rerank is on).
        #[arg(long)]
        rerank: bool,
    },
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// Serve `/v1/embeddings`, `/score` and `/rerank` from the configured embedder.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8000")]
        addr: String,
    },
}

#[derive(Subcommand)]
enum TrainCmd {
    /// Training examples from mined queries (`scripts/train/mine.sh`): each query's gold
    /// definition as our chunker cuts it, with hard negatives (same-file siblings, similar
    /// names, the same package); JSON lines.
    Pairs {
        /// The mined queries (`queries.jsonl`: `id`, `query`, `lang`, `package`, `gold`).
        queries: PathBuf,
        /// The stripped copy the gold paths are relative to.
        #[arg(long)]
        corpus: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Negatives per query.
        #[arg(long, default_value_t = 7)]
        negatives: usize,
        #[arg(long, default_value_t = 19)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// A new random token (32 bytes, hex) and the `[[auth.tokens]]` table with its hash.
    New {
        /// The holder's name (`auth.tokens[].name`).
        #[arg(long, default_value = "client")]
        name: String,
    },
    /// The SHA-256 of a token: `CODEINTEL_TOKEN`, else the first line of stdin.
    Hash,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Exact search on the GPU against FAISS `Flat` on the CPU, same synthetic vectors: agreement,
    /// batched queries per second, latency (a binary built with `--features gpu`).
    Gpu {
        /// Vector counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
        n: Vec<usize>,
        #[arg(long, default_value_t = 384)]
        dim: usize,
        #[arg(long, default_value_t = 10_000)]
        queries: usize,
        /// Queries per GPU call, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,128,1024")]
        batches: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        k: usize,
    },
    /// Flat against trained FAISS primaries on synthetic clustered vectors.
    Vectors {
        /// Vector counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100000")]
        n: Vec<usize>,
        #[arg(long, default_value_t = 384)]
        dim: usize,
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        /// Trained kinds to compare, comma-separated (`sq8`, `pq`).
        #[arg(long, value_delimiter = ',', default_value = "sq8,pq")]
        quantizers: Vec<String>,
    },
    /// Hydrations of one indexed repo from the rows held in memory against DuckDB over its
    /// Parquet segments, in process (the data root of the config): latency, memory, load time.
    Hydrate {
        #[arg(long)]
        repo: String,
        /// Chunk ids per hydration.
        #[arg(long, default_value_t = 100)]
        ids: usize,
        #[arg(long, default_value_t = 500)]
        calls: usize,
    },
    /// The local encoders on candle and on ONNX Runtime, same texts, in process: query latency
    /// one at a time (`embed.query_threads`), chunks/s over an indexed repo's chunks
    /// (`embed.workers` side by side), and the largest difference between their outputs.
    Encoders {
        /// Queries in JSON lines (`query`), as `codeintel eval` reads them.
        queries: PathBuf,
        /// The indexed repo (in the data root) whose chunks are the documents.
        #[arg(long)]
        repo: String,
        /// Documents sampled evenly from the repo's chunks.
        #[arg(long, default_value_t = 512)]
        docs: usize,
    },
    /// One indexed repo's dense search at several `vector.nprobe` values, in process, real query
    /// embeddings: recall of the top k against probing every list, and the search's latency.
    Nprobe {
        /// Queries in JSON lines (`query`), as `codeintel eval` reads them.
        queries: PathBuf,
        /// The indexed repo (in the data root), with a trained (IVF) primary.
        #[arg(long)]
        repo: String,
        /// Lists probed, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "8,16,32,64,128")]
        nprobe: Vec<usize>,
        /// Results compared per query (answer.candidates asks the retrievers for 100).
        #[arg(long, default_value_t = 100)]
        k: usize,
    },
    /// Session scope lookups against a Redis server, with and without the in-process cache.
    Scope {
        #[arg(long)]
        redis_url: String,
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        #[arg(long, default_value_t = 100_000)]
        lookups: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// `Answer` latency against the running mesh (`codeintel up`): time to the citations event,
    /// to the first token and to the end, one query at a time.
    Answers {
        /// Queries in JSON lines (`query`), as `codeintel eval` reads them.
        queries: PathBuf,
        /// Use the first N queries only.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value_t = 5)]
        top_k: u32,
        /// Fused candidates to rerank (0: the server's default; there is reranking only where
        /// answer.rerank_url or answer.local_rerank is set).
        #[arg(long, default_value_t = 0)]
        rerank_top_n: u32,
        /// Per-answer budget, ms (0 = the server's answer.time_budget_ms).
        #[arg(long, default_value_t = 0)]
        time_budget_ms: u32,
    },
    /// Concurrent clients against a running answer-svc (`codeintel up`), each sending requests back
    /// to back for `--duration` seconds at each concurrency level in turn: queries/s, latency
    /// p50/p95/p99/max and failures by gRPC status code, as a table (and `--json FILE`).
    Load {
        #[arg(long, value_enum, default_value = "search")]
        rpc: codeintel::bench::Rpc,
        /// Concurrent clients, one level after another, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
        concurrency: Vec<usize>,
        /// Measured seconds at each level.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Seconds at each level before measuring (requests sent, not counted).
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Queries in JSON lines (`query`), used round-robin; default: a built-in list of generic
        /// code questions and identifiers.
        #[arg(long)]
        queries: Option<PathBuf>,
        /// answer-svc `host:port` (default: answer.addr).
        #[arg(long)]
        addr: Option<String>,
        #[arg(long, default_value_t = 10)]
        top_k: u32,
        /// Retrieval mode of `--rpc search`.
        #[arg(long, value_enum, default_value = "hybrid")]
        mode: Mode,
        /// Deadline of each request, ms.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
        /// HTTP/2 connections the clients share.
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// `--rpc search` requests ask for reranking (the server's rerank server, else its local
        /// cross-encoder); `Answer` reranks whenever the server has a reranker.
        #[arg(long)]
        rerank: bool,
        /// Retry at once after RESOURCE_EXHAUSTED instead of waiting the server's retry hint.
        #[arg(long)]
        ignore_pushback: bool,
        /// Metrics endpoints (`host:port`, comma-separated) whose resident memory is sampled
        /// through the run: a soak. `--memory-from config` takes the four services'
        /// `*.metrics_addr`.
        #[arg(long, value_delimiter = ',')]
        memory_from: Vec<String>,
        /// Seconds between memory samples.
        #[arg(long, default_value_t = 60.0)]
        sample_every: f64,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Upload of a synthetic N-vector version to the object-store data root (`--data-root
    /// s3://...`), then its download and swap into an empty mirror.
    Remote {
        #[arg(long, default_value_t = 1_000_000)]
        n: usize,
        #[arg(long, default_value_t = 384)]
        dim: usize,
    },
    /// An incremental update of CHANGED chunks on top of a CHUNKS-chunk index, then compaction.
    Lifecycle {
        #[arg(long, default_value_t = 100_000)]
        chunks: usize,
        #[arg(long, default_value_t = 1_000)]
        changed: usize,
    },
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg = Config::load(cli.config.as_deref())?;
    for kv in &cli.set {
        let (k, v) = kv.split_once('=').with_context(|| format!("--set expects KEY=VALUE, got {kv:?}"))?;
        cfg.set(k.trim(), v.trim())?;
    }
    if let Some(r) = &cli.data_root {
        cfg.data.root = r.clone();
    }
    Ok(cfg)
}

async fn client(cfg: &Config) -> anyhow::Result<codeintel::client::AnswerClient> {
    codeintel::client::connect(&cfg.answer.addr, &cfg.tls).await
}

/// The `query` of each JSON line of `path`, the first `limit` (0 = all).
fn read_queries(path: &std::path::Path, limit: usize) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["query"].as_str().map(String::from))
        .take(if limit == 0 { usize::MAX } else { limit })
        .collect())
}

/// With an object-store data root: `cfg` rewritten to the local mirror, holding the store's
/// current version of `repo` (if it has one) for an incremental build or a compaction to start
/// from.
async fn pull_for_build(cfg: &mut Config, repo: &str) -> anyhow::Result<Option<Arc<Remote>>> {
    let Some(remote) = Remote::attach(cfg)? else { return Ok(None) };
    match remote.pull_repo(repo).await {
        Ok(_) | Err(RemoteError::Manifest(codeintel_index::manifest::ManifestError::NotIndexed(_))) => Ok(Some(remote)),
        Err(e) => Err(e.into()),
    }
}

fn status_err(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

fn main() -> anyhow::Result<()> {
    // Before any thread or file: what this process writes (indexes, mirrors, logs of `up`) is
    // private to its user.
    codeintel_server::private_files();
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Up | Cmd::Mcp { .. } | Cmd::Models { what: ModelsCmd::Serve { .. } }) {
        stop_when_stdout_closes();
    }
    let cfg = load_config(&cli)?;
    let encoders = matches!(cli.cmd, Cmd::Bench { what: BenchCmd::Encoders { .. }, .. });
    if (matches!(cli.cmd, Cmd::Index { .. }) || encoders) && cfg.embed.url.is_empty() && cfg.embed.workers > 1 {
        // Parallelism comes from the embedding workers; keep each forward pass on one thread.
        // Set before any thread exists.
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    if matches!(cli.cmd, Cmd::Models { .. }) {
        if cfg.models.threads > 0 {
            std::env::set_var("RAYON_NUM_THREADS", cfg.models.threads.to_string());
        }
        if cfg.models.chat_weights == "f32" {
            // candle dequantizes GGUF weights when it loads them if this is set; read once per
            // thread, so set before any thread exists.
            std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1");
        }
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(cli, cfg))
}

/// `codeintel search ... | head`: a reader that closes the pipe ends the command the way it
/// ends `grep`, by SIGPIPE, instead of a panic in `println!` (Rust ignores SIGPIPE, so a write
/// to a closed pipe is an error, which the printing macros panic on). Not for `up`, `mcp` and
/// `models serve`, which run until stopped. Called first in `main`, before any thread exists.
fn stop_when_stdout_closes() {
    sigpipe::reset();
}

/// An indexing error that ran out of disk says so, and what is still served.
fn disk_full_hint(e: impl Into<anyhow::Error>, cfg: &Config, repo: &str) -> anyhow::Error {
    let e: anyhow::Error = e.into();
    let full = e.chain().any(|c| c.to_string().contains("os error 28") || c.to_string().contains("No space left"));
    if !full {
        return e;
    }
    let served = codeintel_index::manifest::current_version_name(&cfg.data.root, repo)
        .map(|v| format!("version {v} of {repo} is untouched and still served"))
        .unwrap_or_else(|| format!("nothing of {repo} was published"));
    e.context(format!(
        "the disk holding {} is full: free some space and run `codeintel index` again ({served}; the next run \
         replaces what this one left)",
        cfg.data.root.display()
    ))
}

async fn run(cli: Cli, cfg: Config) -> anyhow::Result<()> {
    match &cli.cmd {
        Cmd::Index { path, repo, quiet, full, no_wait, rev } => {
            codeintel_server::init_tracing();
            // Before anything touches the data root or an object store under this name.
            codeintel_index::manifest::validate_repo_name(repo)?;
            let mut cfg = cfg.clone();
            let remote = pull_for_build(&mut cfg, repo).await?;
            let opts = index::IndexOptions { full: *full, quiet: *quiet, no_wait: *no_wait, fail_after_writes: None };
            let source = match rev {
                Some(rev) => index::Source::Rev { folder: path, rev },
                None => index::Source::Folder(path),
            };
            let r = index::run_from(&cfg, source, repo, &opts).await.map_err(|e| disk_full_hint(e, &cfg, repo))?;
            if let Some(remote) = &remote {
                if !matches!(r.mode, index::Mode::UpToDate) || r.recorded_commit {
                    remote.push(repo).await?;
                    println!("published {repo} version {} to {}", r.version, remote.url());
                }
            }
            let mode = match r.mode {
                index::Mode::Full => "full",
                index::Mode::Incremental => "incremental",
                index::Mode::UpToDate if r.recorded_commit => "up to date, new commit recorded",
                index::Mode::UpToDate => "up to date",
            };
            println!(
                "indexed {repo} ({mode}): {} files ({} changed, {} deleted), {} chunks ({} embedded, {} removed), \
                 version {} (read {:.2}s, chunk {:.2}s, embed {:.2}s of which sparse {:.2}s, write {:.2}s; {}){}",
                r.files,
                r.changed_files,
                r.deleted_files,
                r.chunks,
                r.embedded,
                r.removed,
                r.version,
                r.read_time.as_secs_f64(),
                r.chunk_time.as_secs_f64(),
                r.embed_time.as_secs_f64(),
                r.sparse_time.as_secs_f64(),
                r.write_time.as_secs_f64(),
                index::throughput(&r),
                r.compacted.map(|v| format!(", compacted into version {v}")).unwrap_or_default()
            );
            for line in index::skipped_lines(&r, index::LISTED_SECRETS) {
                println!("{line}");
            }
        }
        Cmd::Compact { repo, quiet } => {
            codeintel_server::init_tracing();
            codeintel_index::manifest::validate_repo_name(repo)?;
            let mut cfg = cfg.clone();
            let remote = pull_for_build(&mut cfg, repo).await?;
            let m = index::compact(&cfg, repo, *quiet, None).map_err(|e| disk_full_hint(e, &cfg, repo))?;
            if let Some(remote) = &remote {
                remote.push(repo).await?;
            }
            println!("compacted {repo}: version {} ({} chunks, primary {})", m.version, m.chunks, m.primary_kind);
        }
        Cmd::Up => up::run(&cfg, cli.config.as_deref(), &cli.set).await?,
        Cmd::Token { what } => match what {
            TokenCmd::New { name } => {
                let mut raw = [0u8; 32];
                getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
                let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                println!(
                    "token (give it to the client as {}; it is not stored): {token}",
                    codeintel::client::TOKEN_ENV
                );
                println!();
                println!(
                    "[[auth.tokens]]\nname = {name:?}\nsha256 = \"{}\"\nrepos = []",
                    codeintel_server::admission::token_hash(&token)
                );
            }
            TokenCmd::Hash => {
                let token = match std::env::var(codeintel::client::TOKEN_ENV) {
                    Ok(t) if !t.trim().is_empty() => t,
                    _ => {
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line)?;
                        line
                    }
                };
                anyhow::ensure!(!token.trim().is_empty(), "no token: set CODEINTEL_TOKEN or pipe it on stdin");
                println!("{}", codeintel_server::admission::token_hash(token.trim()));
            }
        },
        Cmd::Health { addr, service, timeout_ms } => {
            match codeintel::health::check(addr, service, Duration::from_millis(*timeout_ms)).await {
                Ok(status) => {
                    println!("{}", status.as_str_name());
                    std::process::exit(if status == tonic_health::pb::health_check_response::ServingStatus::Serving {
                        0
                    } else {
                        1
                    });
                }
                Err(e) => {
                    eprintln!("{e:#}");
                    std::process::exit(2);
                }
            }
        }
        Cmd::Ask { question, top_k, time_budget_ms, scope } => {
            let mut c = client(&cfg).await?;
            let req = AnswerRequest {
                query: question.clone(),
                scope: scope.scope(),
                top_k: *top_k,
                rerank_top_n: 0,
                time_budget_ms: *time_budget_ms,
            };
            let mut stream = c.answer(req).await.map_err(status_err)?.into_inner();
            let mut out = std::io::stdout();
            let mut sources = Vec::new();
            while let Some(ev) = stream.message().await.map_err(status_err)? {
                match ev.event {
                    Some(Event::Citations(c)) => sources = c.citations,
                    Some(Event::Token(t)) => {
                        write!(out, "{}", t.text)?;
                        out.flush()?;
                    }
                    Some(Event::Limits(l)) => {
                        for l in l.limits {
                            eprintln!("note [{}]: {}", l.code, l.message);
                        }
                    }
                    Some(Event::Trace(t)) => {
                        let stages: Vec<String> =
                            t.stages.iter().map(|s| format!("{} {:.0}ms", s.stage, s.ms)).collect();
                        eprintln!("trace: total {:.0}ms ({}) by {}", t.total_ms, stages.join(", "), t.synthesizer);
                    }
                    Some(Event::Done(_)) | None => {}
                }
            }
            println!("\n\nSources:");
            for c in &sources {
                let stale = if c.stale { "  (stale: the file changed on disk since indexing)" } else { "" };
                println!("  [{}] {}/{}:{}-{} {}{stale}", c.index, c.repo, c.path, c.start_line, c.end_line, c.symbol);
            }
        }
        Cmd::Search { query, mode, top_k, json, scope, rerank } => {
            let mut c = client(&cfg).await?;
            let req = SearchRequest {
                query: query.clone(),
                scope: scope.scope(),
                top_k: *top_k,
                mode: SearchMode::from(*mode) as i32,
                rerank: *rerank,
            };
            let resp = c.search(req).await.map_err(status_err)?.into_inner();
            for l in &resp.limits {
                eprintln!("note [{}]: {}", l.code, l.message);
            }
            for (i, h) in resp.hits.iter().enumerate() {
                if *json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "rank": i + 1, "chunk_id": h.chunk_id, "repo": h.repo, "path": h.path,
                            "start_line": h.start_line, "end_line": h.end_line, "language": h.language,
                            "symbol": h.symbol, "score": h.score, "dense_rank": h.dense_rank,
                            "lexical_rank": h.lexical_rank, "sparse_rank": h.sparse_rank, "text": h.text,
                            "commit": h.commit, "stale": h.stale,
                        })
                    );
                } else {
                    println!(
                        "{:>2}. {:.4}  {}/{}:{}-{}  {}{}",
                        i + 1,
                        h.score,
                        h.repo,
                        h.path,
                        h.start_line,
                        h.end_line,
                        h.symbol,
                        if h.stale { "  (stale: the file changed on disk since indexing)" } else { "" }
                    );
                }
            }
        }
        Cmd::Defs { symbol, repo, limit, json } => {
            let mut c = codeintel::client::connect_nav(&cfg.answer.addr, &cfg.tls).await?;
            let req = SymbolRequest { symbol: symbol.clone(), repos: repo.iter().cloned().collect(), limit: *limit };
            let r = c.find_definitions(req).await.map_err(status_err)?.into_inner();
            if *json {
                for d in &r.definitions {
                    println!(
                        "{}",
                        serde_json::json!({"repo": d.repo, "path": d.path, "start_line": d.start_line,
                            "end_line": d.end_line, "symbol": d.symbol, "kind": d.kind, "language": d.language,
                            "signature": d.signature, "version": d.version})
                    );
                }
            } else {
                print!("{}", codeintel::mcp::render::definitions(symbol, &r, usize::MAX / 2));
            }
        }
        Cmd::Refs { symbol, repo, limit, json, callers: true } => {
            let mut c = codeintel::client::connect_nav(&cfg.answer.addr, &cfg.tls).await?;
            let req = SymbolRequest { symbol: symbol.clone(), repos: repo.iter().cloned().collect(), limit: *limit };
            let r = c.find_callers(req).await.map_err(status_err)?.into_inner();
            if *json {
                for x in &r.callers {
                    println!(
                        "{}",
                        serde_json::json!({"repo": x.repo, "path": x.path, "symbol": x.symbol,
                            "start_line": x.start_line, "end_line": x.end_line, "lines": x.lines,
                            "resolution": x.resolution, "text": x.text})
                    );
                }
            } else {
                print!("{}", codeintel::mcp::render::callers(symbol, &r, usize::MAX / 2));
            }
        }
        Cmd::Refs { symbol, repo, limit, json, callers: false } => {
            let mut c = codeintel::client::connect_nav(&cfg.answer.addr, &cfg.tls).await?;
            let req = SymbolRequest { symbol: symbol.clone(), repos: repo.iter().cloned().collect(), limit: *limit };
            let r = c.find_references(req).await.map_err(status_err)?.into_inner();
            if *json {
                for x in &r.references {
                    println!(
                        "{}",
                        serde_json::json!({"repo": x.repo, "path": x.path, "line": x.line, "name": x.name,
                            "qualifier": x.qualifier, "kind": x.kind, "enclosing": x.enclosing, "text": x.text,
                            "resolution": x.resolution, "version": x.version})
                    );
                }
            } else {
                print!("{}", codeintel::mcp::render::references(symbol, &r, usize::MAX / 2));
            }
        }
        Cmd::Mcp { http, addr, max_chars } => {
            let max_chars = max_chars.unwrap_or(cfg.mcp.max_chars);
            let channel = codeintel::client::lazy_channel(&cfg.answer.addr, &cfg.tls)?;
            let server = codeintel::mcp::CodeIntelMcp::new(channel, &cfg.answer.addr, max_chars)?;
            if *http {
                codeintel_server::init_tracing();
                let addr = addr.clone().unwrap_or_else(|| cfg.mcp.http_addr.clone());
                let listener =
                    tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("cannot bind {addr}"))?;
                let scheme = if cfg.tls.serves() { "https" } else { "http" };
                let local = listener.local_addr()?;
                if !local.ip().is_loopback() && !cfg.tls.serves() {
                    tracing::warn!(%local, "MCP over plaintext HTTP on a non-loopback address: set tls.cert and tls.key");
                }
                eprintln!("mcp listening on {scheme}://{local}/mcp");
                codeintel::mcp::serve_http(
                    server,
                    listener,
                    &cfg.mcp.allowed_hosts,
                    &cfg.tls,
                    codeintel_server::shutdown_signal(),
                )
                .await?;
            } else {
                // stdout is the protocol: logs go to stderr only (init_tracing writes there).
                codeintel::mcp::serve_stdio(server).await?;
            }
        }
        Cmd::Models { what: ModelsCmd::Serve { addr } } => {
            codeintel_server::init_tracing();
            let embedder = codeintel_models::embed::Embedder::from_config(
                &cfg,
                cfg.models.threads,
                codeintel_models::embed::Role::Documents,
            )
            .await?;
            let chat = if cfg.models.chat {
                let path = cfg.chat_gguf();
                let model = tokio::task::spawn_blocking(move || codeintel::chat::ChatModel::load(&path)).await??;
                Some((std::sync::Arc::new(model), cfg.models.chat_model_id.clone()))
            } else {
                None
            };
            let models =
                std::sync::Arc::new(codeintel::models::Models { embedder, model_id: cfg.embed.model_id.clone(), chat });
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot bind {addr}"))?;
            let scheme = if cfg.tls.serves() { "https" } else { "http" };
            eprintln!("models listening on {scheme} {}", listener.local_addr()?);
            codeintel::models::serve(listener, models, cfg.tls.clone()).await?;
        }
        Cmd::Bench { what } => {
            let work = codeintel::bench::default_workdir();
            // What is printed: the figures as JSON, or `load`'s table.
            let out = match what {
                #[cfg(feature = "gpu")]
                BenchCmd::Gpu { n, dim, queries, batches, k } => serde_json::to_string_pretty(&codeintel::bench::gpu(
                    n,
                    *dim,
                    *queries,
                    batches,
                    *k,
                    cfg.vector.gpu_ordinal,
                )?)?,
                #[cfg(not(feature = "gpu"))]
                BenchCmd::Gpu { .. } => anyhow::bail!(
                    "this codeintel was built without the `gpu` feature: cargo build --release -p codeintel --features gpu"
                ),
                BenchCmd::Vectors { n, dim, queries, quantizers } => serde_json::to_string_pretty(
                    &codeintel::bench::vectors(
                        n,
                        *dim,
                        *queries,
                        quantizers,
                        &cfg.embed.model_id,
                        // The configured local embedder's weights, when it has them.
                        &codeintel_models::embed::weights_sha256(&cfg.model_dir()).unwrap_or_default(),
                        &work,
                    )?,
                )?,
                BenchCmd::Hydrate { repo, ids, calls } => {
                    serde_json::to_string_pretty(&codeintel::bench::hydrate(&cfg, repo, *ids, *calls)?)?
                }
                BenchCmd::Encoders { queries, repo, docs } => {
                    let qs = read_queries(queries, 0)?;
                    serde_json::to_string_pretty(&codeintel::bench::encoders(&cfg, &qs, repo, *docs)?)?
                }
                BenchCmd::Nprobe { queries, repo, nprobe, k } => {
                    let qs = read_queries(queries, 0)?;
                    serde_json::to_string_pretty(&codeintel::bench::nprobe(&cfg, &qs, repo, nprobe, *k).await?)?
                }
                BenchCmd::Scope { redis_url, sessions, lookups, concurrency } => serde_json::to_string_pretty(
                    &codeintel::bench::scope(redis_url, *sessions, *lookups, *concurrency).await?,
                )?,
                BenchCmd::Answers { queries, limit, top_k, rerank_top_n, time_budget_ms } => {
                    let qs = read_queries(queries, limit.unwrap_or(0))?;
                    let mut c = client(&cfg).await?;
                    serde_json::to_string_pretty(
                        &codeintel::bench::answers(&mut c, &qs, *top_k, *rerank_top_n, *time_budget_ms).await?,
                    )?
                }
                BenchCmd::Remote { n, dim } => {
                    serde_json::to_string_pretty(&codeintel::bench::remote(&cfg, *n, *dim, &work).await?)?
                }
                BenchCmd::Lifecycle { chunks, changed } => {
                    serde_json::to_string_pretty(&codeintel::bench::lifecycle(&cfg, *chunks, *changed, &work).await?)?
                }
                BenchCmd::Load {
                    rpc,
                    concurrency,
                    duration,
                    warmup,
                    queries,
                    addr,
                    top_k,
                    mode,
                    timeout_ms,
                    connections,
                    rerank,
                    ignore_pushback,
                    memory_from,
                    sample_every,
                    json,
                } => {
                    anyhow::ensure!(
                        duration.is_finite() && *duration > 0.0 && warmup.is_finite() && *warmup >= 0.0,
                        "--duration must be positive and --warmup not negative"
                    );
                    let queries = match queries {
                        Some(f) => codeintel::bench::parse_queries(
                            &std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?,
                        )
                        .with_context(|| format!("in {}", f.display()))?,
                        None => codeintel::bench::BUILTIN_QUERIES.iter().map(|q| q.to_string()).collect(),
                    };
                    let opts = codeintel::bench::LoadOptions {
                        rpc: *rpc,
                        addr: addr.clone().unwrap_or_else(|| cfg.answer.addr.clone()),
                        concurrency: concurrency.clone(),
                        duration: Duration::from_secs_f64(*duration),
                        warmup: Duration::from_secs_f64(*warmup),
                        queries,
                        top_k: *top_k,
                        mode: SearchMode::from(*mode) as i32,
                        rerank: *rerank,
                        timeout: Duration::from_millis(*timeout_ms),
                        connections: *connections,
                        tls: cfg.tls.clone(),
                        honour_pushback: !*ignore_pushback,
                        memory_from: if memory_from.iter().any(|m| m == "config") {
                            [&cfg.vector.metrics_addr, &cfg.lexical.metrics_addr, &cfg.hydrate.metrics_addr, &cfg.answer.metrics_addr]
                                .into_iter()
                                .filter(|a| !a.is_empty())
                                .cloned()
                                .collect()
                        } else {
                            memory_from.clone()
                        },
                        sample_every: Duration::from_secs_f64(sample_every.max(0.1)),
                    };
                    let figures = codeintel::bench::load(&opts).await?;
                    if let Some(f) = json {
                        std::fs::write(f, serde_json::to_string_pretty(&figures)?)
                            .with_context(|| format!("cannot write {}", f.display()))?;
                    }
                    let mut out = codeintel::bench::load_table(&figures.levels).trim_end().to_string();
                    if !figures.memory.is_empty() {
                        out.push_str("\n\nresident memory\n");
                        out.push_str(codeintel::bench::memory_table(&figures.memory).trim_end());
                    }
                    out
                }
            };
            let _ = std::fs::remove_dir_all(&work);
            println!("{out}");
        }
        Cmd::Train { what: TrainCmd::Pairs { queries, corpus, out, negatives, seed } } => {
            let qs = codeintel::train::read_queries(queries)?;
            let (examples, stats) = codeintel::train::examples(corpus, &qs, *negatives, *seed)?;
            let mut w = std::io::BufWriter::new(
                std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?,
            );
            let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
            for e in &examples {
                for k in &e.neg_kinds {
                    *kinds.entry(k.as_str()).or_default() += 1;
                }
                serde_json::to_writer(&mut w, e)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
            eprintln!(
                "{} queries -> {} examples in {} ({} without a chunk, {} ambiguous, {} repeated); negatives {kinds:?}",
                stats.queries,
                stats.examples,
                out.display(),
                stats.no_chunk,
                stats.ambiguous,
                stats.duplicate
            );
        }
        Cmd::Eval { queries, mode, out, top_k, rerank } => {
            let mut c = client(&cfg).await?;
            let text =
                std::fs::read_to_string(queries).with_context(|| format!("cannot read {}", queries.display()))?;
            let mut w = std::io::BufWriter::new(
                std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?,
            );
            let mut lat = Vec::new();
            for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                let q: serde_json::Value =
                    serde_json::from_str(line).with_context(|| format!("line {} is not JSON", n + 1))?;
                let id = q["id"].as_str().with_context(|| format!("line {} has no id", n + 1))?;
                let query = q["query"].as_str().with_context(|| format!("line {} has no query", n + 1))?;
                let t = Instant::now();
                let req = SearchRequest {
                    query: query.into(),
                    scope: None,
                    top_k: *top_k,
                    mode: SearchMode::from(*mode) as i32,
                    rerank: *rerank,
                };
                let hits = match c.search(req).await {
                    Ok(r) => r.into_inner().hits,
                    Err(s) => {
                        eprintln!("{id}: {}", status_err(s));
                        Vec::new()
                    }
                };
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                let hits: Vec<_> = hits
                    .iter()
                    .map(|h| serde_json::json!({"path": h.path, "start_line": h.start_line, "end_line": h.end_line, "symbol": h.symbol, "score": h.score}))
                    .collect();
                writeln!(w, "{}", serde_json::json!({"id": id, "hits": hits}))?;
            }
            w.flush()?;
            lat.sort_by(f64::total_cmp);
            let pct =
                |p: f64| lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
            eprintln!(
                "{} queries -> {}; Search latency p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
                lat.len(),
                out.display(),
                pct(0.5),
                pct(0.95),
                pct(1.0)
            );
        }
    }
    Ok(())
}
