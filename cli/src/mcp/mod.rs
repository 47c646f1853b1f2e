//! `codeintel mcp`: CodeIntel as an MCP server for coding agents, over stdio and over
//! streamable HTTP (`/mcp`), built with the official Rust SDK (`rmcp`). It is a client of the
//! running mesh: every tool is one call to answer-svc (`AnswerService` for search and answers,
//! `NavigationService` for definitions, references, outlines, files and repos), so no index is
//! opened twice and answer-svc's tokens and limits apply. Over stdio the token is
//! `CODEINTEL_TOKEN`; over HTTP, each request's own `Authorization` header is passed on (the
//! server's token is never lent to an HTTP caller).

pub mod render;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use codeintel_core::proto::v1::answer_event::Event;
use codeintel_core::proto::v1::{
    AnswerRequest, FileRequest, ListReposRequest, Scope, SearchMode, SearchRequest, SymbolRequest,
};
use futures::StreamExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde::Deserialize;
use tonic::transport::Channel;

use crate::client::{answer_client, nav_client, AnswerClient, Bearer, NavClient};

/// How long one tool call may take (an `ask` streams within its own budget).
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// The tools, over one lazily connected channel to answer-svc.
#[derive(Clone)]
pub struct CodeIntelMcp {
    channel: Channel,
    addr: String,
    /// `CODEINTEL_TOKEN`, for stdio only.
    env_bearer: Bearer,
    max_chars: usize,
    #[allow(dead_code)] // read by the #[tool_handler] expansion
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SearchArgs {
    /// What to find: words ("where are retries configured"), or a symbol name (`Parser.parse`).
    pub query: String,
    /// Only these repos (names as `list_repos` shows them).
    #[serde(default)]
    pub repos: Vec<String>,
    /// Only paths matching one of these globs (`src/**/*.rs`).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Only these languages (`python`, `rust`, `typescript`, ...).
    #[serde(default)]
    pub languages: Vec<String>,
    /// `hybrid` (default: dense, BM25 and SPLADE fused), `dense`, `lexical` or `sparse`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Hits wanted, 1..=50 (default 8).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Size budget of the result in characters (default: the server's `mcp.max_chars`).
    #[serde(default)]
    pub max_chars: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AskArgs {
    /// A question about the code, in plain language.
    pub question: String,
    #[serde(default)]
    pub repos: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub languages: Vec<String>,
    /// Sources cited, 1..=20 (default 8).
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub max_chars: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReadArgs {
    /// The repo (as `list_repos` shows it).
    pub repo: String,
    /// Repo-relative path, as search hits show it (`src/cart.py`).
    pub path: String,
    /// First line, 1-based (default 1).
    #[serde(default)]
    pub start_line: Option<u32>,
    /// Last line, inclusive (default: the end of the file; at most 2000 lines per call).
    #[serde(default)]
    pub end_line: Option<u32>,
    #[serde(default)]
    pub max_chars: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SymbolArgs {
    /// A name (`parse`) or qualified name (`Parser.parse`, `Command::new`).
    pub symbol: String,
    /// Only this repo.
    #[serde(default)]
    pub repo: Option<String>,
    /// At most this many results, 1..=1000 (default 50).
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub max_chars: Option<usize>,
}

impl SymbolArgs {
    /// The navigation request these arguments ask, `default_limit` results when none is given.
    fn request(&self, default_limit: u32) -> SymbolRequest {
        SymbolRequest {
            symbol: self.symbol.clone(),
            repos: self.repo.iter().cloned().collect(),
            limit: self.limit.unwrap_or(default_limit),
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct FileArgs {
    pub repo: String,
    /// Repo-relative path (`src/cart.py`).
    pub path: String,
    #[serde(default)]
    pub max_chars: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RepoArgs {
    pub repo: String,
}

fn text(s: String) -> Result<CallToolResult, ErrorData> {
    Ok(CallToolResult::success(vec![ContentBlock::text(s)]))
}

impl CodeIntelMcp {
    /// The tools over a channel to answer-svc at `addr` (connected on first use).
    pub fn new(channel: Channel, addr: &str, max_chars: usize) -> anyhow::Result<Self> {
        Ok(Self {
            channel,
            addr: addr.to_string(),
            env_bearer: Bearer::from_env()?,
            max_chars,
            tool_router: Self::tool_router(),
        })
    }

    /// The caller's token: the HTTP request's `Authorization` header over HTTP (none when it
    /// sent none), `CODEINTEL_TOKEN` over stdio.
    fn bearer(&self, ctx: &RequestContext<RoleServer>) -> Result<Bearer, String> {
        match ctx.extensions.get::<http::request::Parts>() {
            Some(parts) => match parts.headers.get(http::header::AUTHORIZATION) {
                Some(v) => {
                    Bearer::header(v.to_str().map_err(|_| "the authorization header must be ASCII".to_string())?)
                        .map_err(|e| e.to_string())
                }
                None => Ok(Bearer::default()),
            },
            None => Ok(self.env_bearer.clone()),
        }
    }

    fn answer(&self, ctx: &RequestContext<RoleServer>) -> Result<AnswerClient, String> {
        Ok(answer_client(self.channel.clone(), self.bearer(ctx)?))
    }

    fn nav(&self, ctx: &RequestContext<RoleServer>) -> Result<NavClient, String> {
        Ok(nav_client(self.channel.clone(), self.bearer(ctx)?))
    }

    fn budget(&self, asked: Option<usize>) -> usize {
        asked.unwrap_or(self.max_chars).clamp(200, 1_000_000)
    }

    /// A failed call as a tool error whose sentence says what to fix.
    fn failure(&self, tool: &str, s: tonic::Status) -> Result<CallToolResult, ErrorData> {
        let hint = match s.code() {
            tonic::Code::Unavailable if s.message().contains("transport") || s.message().contains("connect") => {
                format!("answer-svc is not reachable at {}: start the mesh with `codeintel up`", self.addr)
            }
            tonic::Code::Unauthenticated => format!(
                "{} (set CODEINTEL_TOKEN for stdio, or send `Authorization: Bearer <token>` over HTTP)",
                s.message()
            ),
            tonic::Code::ResourceExhausted => format!("{} (the mesh is busy: retry in a moment)", s.message()),
            _ => s.message().to_string(),
        };
        Ok(CallToolResult::error(vec![ContentBlock::text(format!("{tool} failed ({:?}): {hint}", s.code()))]))
    }

    fn refused(&self, tool: &str, why: String) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::error(vec![ContentBlock::text(format!("{tool}: {why}"))]))
    }
}

fn request<T>(msg: T, d: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(d);
    r
}

fn scope(repos: Vec<String>, paths: Vec<String>, languages: Vec<String>) -> Scope {
    Scope { repos, include_globs: paths, exclude_globs: Vec::new(), languages }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[tool_router]
impl CodeIntelMcp {
    #[tool(
        description = "Search the indexed code. Returns ranked code spans as `repo/path:start-end` with numbered lines. Use words for behaviour (\"where are retries configured\") or a symbol name for an exact definition (`Parser.parse`). Narrow with repos, paths (globs) and languages."
    )]
    async fn search_code(
        &self,
        Parameters(a): Parameters<SearchArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let mode = match a.mode.as_deref().unwrap_or("hybrid") {
            "hybrid" => SearchMode::Hybrid,
            "dense" => SearchMode::Dense,
            "lexical" => SearchMode::Lexical,
            "sparse" => SearchMode::Sparse,
            other => {
                return self
                    .refused("search_code", format!("mode `{other}` is not one of hybrid, dense, lexical, sparse"))
            }
        };
        let limit = a.limit.unwrap_or(8);
        if !(1..=50).contains(&limit) {
            return self.refused("search_code", format!("limit must be in 1..=50, got {limit}"));
        }
        let mut client = match self.answer(&ctx) {
            Ok(c) => c,
            Err(why) => return self.refused("search_code", why),
        };
        let req = SearchRequest {
            query: a.query,
            scope: Some(scope(a.repos, a.paths, a.languages)),
            top_k: limit,
            mode: mode as i32,
            rerank: false,
        };
        match client.search(request(req, CALL_DEADLINE)).await {
            Ok(r) => {
                let r = r.into_inner();
                text(render::hits(&r.hits, &r.limits, self.budget(a.max_chars)))
            }
            Err(s) => self.failure("search_code", s),
        }
    }

    #[tool(
        description = "Ask a question about the indexed code and get an answer whose claims cite `[n]` sources, listed first as `repo/path:start-end`. Tokens stream as progress notifications when the client sends a progress token. Without a language model the answer is the ranked code itself."
    )]
    async fn ask(
        &self,
        Parameters(a): Parameters<AskArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let top_k = a.top_k.unwrap_or(8);
        if !(1..=20).contains(&top_k) {
            return self.refused("ask", format!("top_k must be in 1..=20, got {top_k}"));
        }
        let mut client = match self.answer(&ctx) {
            Ok(c) => c,
            Err(why) => return self.refused("ask", why),
        };
        let req = AnswerRequest {
            query: a.question,
            scope: Some(scope(a.repos, a.paths, a.languages)),
            top_k,
            rerank_top_n: 0,
            time_budget_ms: 20_000,
        };
        let mut stream = match client.answer(request(req, CALL_DEADLINE)).await {
            Ok(s) => s.into_inner(),
            Err(s) => return self.failure("ask", s),
        };
        let progress = ctx.meta.get_progress_token();
        let (mut answer, mut citations, mut limits, mut tokens) = (String::new(), Vec::new(), Vec::new(), 0u32);
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(s) => return self.failure("ask", s),
            };
            match ev.event {
                Some(Event::Citations(c)) => citations = c.citations,
                Some(Event::Token(t)) => {
                    tokens += 1;
                    answer.push_str(&t.text);
                    if let Some(p) = &progress {
                        let note = ProgressNotificationParam::new(p.clone(), tokens as f64).with_message(t.text);
                        // A client that went away ends the call below; a lost note is not an error.
                        let _ = ctx.peer.notify_progress(note).await;
                    }
                }
                Some(Event::Limits(l)) => limits.extend(l.limits),
                Some(Event::Done(_)) => break,
                _ => {}
            }
            if ctx.ct.is_cancelled() {
                break;
            }
        }
        text(render::answer(&answer, &citations, &limits, self.budget(a.max_chars)))
    }

    #[tool(
        description = "Read lines of an indexed file, numbered, as they were indexed. Warns `stale` when the file on disk changed since (line numbers may have moved: reindex before editing). Paths are repo-relative; paths outside the repository are refused."
    )]
    async fn read_code(
        &self,
        Parameters(a): Parameters<ReadArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut client = match self.nav(&ctx) {
            Ok(c) => c,
            Err(why) => return self.refused("read_code", why),
        };
        let req = FileRequest {
            repo: a.repo,
            path: a.path,
            start_line: a.start_line.unwrap_or(0),
            end_line: a.end_line.unwrap_or(0),
        };
        match client.read_file(request(req, CALL_DEADLINE)).await {
            Ok(r) => text(render::file(&r.into_inner(), self.budget(a.max_chars))),
            Err(s) => self.failure("read_code", s),
        }
    }

    #[tool(
        description = "Find where a symbol is defined: `repo/path:start-end`, kind and signature of each definition, exact qualified matches first. Accepts `name`, `Type.method` or `Type::method`."
    )]
    async fn find_definition(
        &self,
        Parameters(a): Parameters<SymbolArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut client = match self.nav(&ctx) {
            Ok(c) => c,
            Err(why) => return self.refused("find_definition", why),
        };
        let req = a.request(20);
        match client.find_definitions(request(req, CALL_DEADLINE)).await {
            Ok(r) => text(render::definitions(&a.symbol, &r.into_inner(), self.budget(a.max_chars))),
            Err(s) => self.failure("find_definition", s),
        }
    }

    #[tool(
        description = "Find the uses of a symbol (calls, type uses, imports, macro uses) as `repo/path:line`, each with the enclosing definition and how surely it means the symbol: qualified, same_file, imported, name_only. Resolution is by name and scope hints, not types."
    )]
    async fn find_references(
        &self,
        Parameters(a): Parameters<SymbolArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut client = match self.nav(&ctx) {
            Ok(c) => c,
            Err(why) => return self.refused("find_references", why),
        };
        let req = a.request(50);
        match client.find_references(request(req, CALL_DEADLINE)).await {
            Ok(r) => text(render::references(&a.symbol, &r.into_inner(), self.budget(a.max_chars))),
            Err(s) => self.failure("find_references", s),
        }
    }

    #[tool(
        description = "Find who calls a symbol: the definitions whose code calls it (or invokes it as a macro), surest first, each as `repo/path:start-end caller` with its call lines. The callers view of find_references; resolution by name and scope hints, not types."
    )]
    async fn find_callers(
        &self,
        Parameters(a): Parameters<SymbolArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut client = match self.nav(&ctx) {
            Ok(c) => c,
            Err(why) => return self.refused("find_callers", why),
        };
        let req = a.request(50);
        match client.find_callers(request(req, CALL_DEADLINE)).await {
            Ok(r) => text(render::callers(&a.symbol, &r.into_inner(), self.budget(a.max_chars))),
            Err(s) => self.failure("find_callers", s),
        }
    }

    #[tool(
        description = "The outline of one indexed file: its definitions in line order with spans, kinds and signatures, members indented under their type."
    )]
    async fn list_symbols(
        &self,
        Parameters(a): Parameters<FileArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut client = match self.nav(&ctx) {
            Ok(c) => c,
            Err(why) => return self.refused("list_symbols", why),
        };
        let req = FileRequest { repo: a.repo.clone(), path: a.path.clone(), start_line: 0, end_line: 0 };
        match client.outline(request(req, CALL_DEADLINE)).await {
            Ok(r) => text(render::outline(&a.repo, &a.path, &r.into_inner(), self.budget(a.max_chars))),
            Err(s) => self.failure("list_symbols", s),
        }
    }

    #[tool(
        description = "The indexed repositories: version, chunk and file counts, languages, definitions and references recorded, where and when each was indexed."
    )]
    async fn list_repos(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let mut client = match self.nav(&ctx) {
            Ok(c) => c,
            Err(why) => return self.refused("list_repos", why),
        };
        match client.list_repos(request(ListReposRequest {}, CALL_DEADLINE)).await {
            Ok(r) => text(render::repos(&r.into_inner().repos, now_ms(), self.max_chars)),
            Err(s) => self.failure("list_repos", s),
        }
    }

    #[tool(description = "The index status of one repository: its served version, counts, languages, source and age.")]
    async fn index_status(
        &self,
        Parameters(a): Parameters<RepoArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut client = match self.nav(&ctx) {
            Ok(c) => c,
            Err(why) => return self.refused("index_status", why),
        };
        match client.list_repos(request(ListReposRequest {}, CALL_DEADLINE)).await {
            Ok(r) => {
                let repos = r.into_inner().repos;
                match repos.iter().find(|x| x.repo == a.repo) {
                    Some(x) => text(render::repos(std::slice::from_ref(x), now_ms(), self.max_chars)),
                    None => {
                        let names: Vec<&str> = repos.iter().map(|x| x.repo.as_str()).collect();
                        self.refused(
                            "index_status",
                            format!(
                                "repo {} is not served (served: {}); index it with `codeintel index PATH --repo {}`",
                                a.repo,
                                if names.is_empty() { "none".to_string() } else { names.join(", ") },
                                a.repo
                            ),
                        )
                    }
                }
            }
            Err(s) => self.failure("index_status", s),
        }
    }
}

#[tool_handler]
impl ServerHandler for CodeIntelMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("codeintel", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "CodeIntel: a code index. search_code finds code by words or names; ask answers with cited \
                 sources; find_definition / find_references / find_callers / list_symbols navigate; read_code reads indexed \
                 lines (check `stale` before editing); list_repos and index_status say what is indexed. \
                 Every result starts with repo/path:start-end.",
            )
    }
}

/// Serves the tools over stdin/stdout until the client closes them.
pub async fn serve_stdio(server: CodeIntelMcp) -> anyhow::Result<()> {
    let running = server.serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}

/// Serves the tools over streamable HTTP at `/mcp` on `listener` until `shutdown`; TLS with
/// the mesh's certificate when `tls.cert` is set. `Host` must be a loopback name or one of
/// `allowed_hosts` (DNS-rebinding protection).
pub async fn serve_http(
    server: CodeIntelMcp,
    listener: tokio::net::TcpListener,
    allowed_hosts: &[String],
    tls: &codeintel_config::TlsConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
    let ct = tokio_util::sync::CancellationToken::new();
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    hosts.extend(allowed_hosts.iter().cloned());
    let config =
        StreamableHttpServerConfig::default().with_allowed_hosts(hosts).with_cancellation_token(ct.child_token());
    let service: StreamableHttpService<CodeIntelMcp, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(server.clone()), Arc::new(LocalSessionManager::default()), config);
    let app = axum::Router::new().nest_service("/mcp", service);
    let stop = async move {
        shutdown.await;
        ct.cancel();
    };
    codeintel_server::serve_app(listener, app, tls, stop).await
}
