//! Chunk lookups over the published Parquet segments. Hydration (`fetch`) is answered from each
//! served version's live rows held in memory ([`MemRows`], `hydrate.in_memory`), or through
//! DuckDB; navigation always queries DuckDB. One shared in-memory database; every request works
//! on its own connection cloned from it (DuckDB connections are not shared across threads). All
//! values from requests are bound as parameters.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, StringArray, UInt32Array};
use arrow::datatypes::UInt64Type;
use arrow::record_batch::RecordBatch;
use codeintel_config::Config;
use codeintel_core::scope::ScopeFilter;
use codeintel_core::ticket::{HydrateTicket, MAX_TICKET_IDS};
use codeintel_index::catalog::Catalog;
use codeintel_index::manifest;
use codeintel_server::{Metrics, Readiness, SharedReadiness};
use duckdb::types::Value as DbValue;
use parking_lot::{Mutex, RwLock};

use crate::error::HydrateError;

/// Absolute paths of one repo version's segment files.
pub struct RepoSegments {
    pub files: Vec<PathBuf>,
    pub chunks: u64,
    /// Dead chunk ids whose rows are still in a segment: never returned.
    pub tombstones: std::collections::HashSet<u64>,
    /// Every segment has the `refs` column (chunk format 3 on): references can be asked.
    pub has_refs: bool,
    /// The live rows, when `hydrate.in_memory`.
    pub rows: Option<MemRows>,
}

/// One version's live chunk rows ([`codeintel_core::wire::schema`]) in one Arrow batch, and
/// where each chunk id's row is: a hydration is a hash lookup per id and one `take`.
pub struct MemRows {
    pub batch: RecordBatch,
    at: std::collections::HashMap<u64, u32>,
}

impl MemRows {
    /// Bytes the rows and their index hold.
    pub fn bytes(&self) -> usize {
        self.batch.get_array_memory_size() + self.at.capacity() * (8 + 4 + 8)
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Every live chunk id, ascending.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.at.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The rows of `ids` (those this version holds), ordered by chunk id, each once.
    fn take(&self, ids: &[u64]) -> Result<RecordBatch, HydrateError> {
        let mut rows: Vec<(u64, u32)> = ids.iter().filter_map(|id| self.at.get(id).map(|&r| (*id, r))).collect();
        rows.sort_unstable();
        rows.dedup();
        let idx = UInt32Array::from_iter_values(rows.into_iter().map(|(_, r)| r));
        Ok(arrow::compute::take_record_batch(&self.batch, &idx)?)
    }
}

pub struct ChunkStore {
    pub(crate) db: Mutex<duckdb::Connection>,
    pub catalog: Catalog<RepoSegments>,
    /// `data.verify_checksums`: check a version's files before serving it.
    verify: bool,
    pub readiness: SharedReadiness,
    pub metrics: Metrics,
    /// Whether served files still have their indexed content on disk.
    pub freshness: crate::fresh::Freshness,
    /// `hydrate.in_memory`: each version's rows are loaded with it ([`MemRows`]).
    in_memory: bool,
}

impl ChunkStore {
    pub fn new(cfg: &Config) -> Result<Arc<Self>, HydrateError> {
        Self::with_memory(cfg, cfg.hydrate.in_memory)
    }

    /// As [`Self::new`], rows in memory or not whatever `hydrate.in_memory` says (benchmarks).
    pub fn with_memory(cfg: &Config, in_memory: bool) -> Result<Arc<Self>, HydrateError> {
        let db = duckdb::Connection::open_in_memory()?;
        // Keep Parquet metadata between queries: segments are immutable once published.
        db.execute_batch("SET enable_object_cache = true;")?;
        let s = Arc::new(Self {
            db: Mutex::new(db),
            catalog: Catalog::new(&cfg.data.root),
            verify: cfg.data.verify_checksums,
            readiness: Arc::new(RwLock::new(Readiness::ready())),
            metrics: Metrics::new("hydrate"),
            freshness: Default::default(),
            in_memory,
        });
        s.refresh();
        Ok(s)
    }

    pub fn refresh(&self) {
        self.catalog.refresh(|dir, m| {
            let files: Vec<PathBuf> = m.segments.iter().map(|s| dir.join(s)).collect();
            if let Some(missing) = files.iter().find(|f| !f.is_file()) {
                return Err(format!("segment {} is missing", missing.display()));
            }
            if self.verify {
                manifest::verify(dir, m, manifest::Reader::Hydrate).map_err(|e| e.to_string())?;
            }
            let tombstones = codeintel_index::manifest::tombstones(dir, m).map_err(|e| e.to_string())?;
            let has_refs =
                !files.is_empty() && files.iter().all(|f| self.has_column(f, codeintel_core::wire::REFS_COLUMN));
            let mut segments = RepoSegments { files, chunks: m.chunks, tombstones, has_refs, rows: None };
            if self.in_memory {
                let rows = self.load_rows(&segments).map_err(|e| format!("loading its rows into memory: {e}"))?;
                tracing::info!(
                    repo = %m.repo,
                    version = m.version,
                    chunks = rows.len(),
                    mib = rows.bytes() as f64 / (1 << 20) as f64,
                    "rows held in memory"
                );
                segments.rows = Some(rows);
            }
            Ok(segments)
        });
        let served = self.catalog.snapshot().len();
        *self.readiness.write() = Readiness::of_repos(served, self.catalog.errors(), Vec::new());
    }

    /// Every live row of a version, read once through DuckDB.
    fn load_rows(&self, s: &RepoSegments) -> Result<MemRows, HydrateError> {
        let conn = self.db.lock().try_clone()?;
        let marks = vec!["?"; s.files.len()].join(", ");
        let sql = format!(
            "SELECT DISTINCT {} FROM read_parquet([{marks}]) ORDER BY chunk_id",
            codeintel_core::wire::column_list()
        );
        let params: Vec<DbValue> = s.files.iter().map(|f| DbValue::Text(f.display().to_string())).collect();
        let mut stmt = conn.prepare(&sql)?;
        let mut parts = Vec::new();
        for b in stmt.query_arrow(duckdb::params_from_iter(params))? {
            let b = codeintel_core::wire::conform(&b)?;
            let ids = b.column(0).as_primitive::<UInt64Type>();
            let live: BooleanArray = (0..ids.len()).map(|i| Some(!s.tombstones.contains(&ids.value(i)))).collect();
            parts.push(arrow::compute::filter_record_batch(&b, &live)?);
        }
        let batch = arrow::compute::concat_batches(&codeintel_core::wire::schema(), &parts)?;
        let ids = batch.column(0).as_primitive::<UInt64Type>();
        let mut at = std::collections::HashMap::with_capacity(ids.len());
        for i in 0..ids.len() {
            at.entry(ids.value(i)).or_insert(i as u32);
        }
        Ok(MemRows { batch, at })
    }

    /// Bytes of the rows held in memory, over every served version.
    pub fn memory_bytes(&self) -> usize {
        self.catalog.snapshot().iter().filter_map(|l| l.value.rows.as_ref().map(MemRows::bytes)).sum()
    }

    /// Whether a Parquet file has a top-level column `name` (its footer only is read).
    fn has_column(&self, file: &std::path::Path, name: &str) -> bool {
        let Ok(conn) = self.db.lock().try_clone() else { return false };
        conn.query_row(
            "SELECT count(*) FROM parquet_schema(?) WHERE name = ?",
            duckdb::params![file.display().to_string(), name],
            |r| r.get::<_, i64>(0),
        )
        .is_ok_and(|n| n > 0)
    }

    pub fn validate(&self, t: &HydrateTicket) -> Result<ScopeFilter, HydrateError> {
        if t.chunk_ids.is_empty() {
            return Err(HydrateError::InvalidArgument("ticket names no chunk_ids".into()));
        }
        if t.chunk_ids.len() > MAX_TICKET_IDS {
            return Err(HydrateError::InvalidArgument(format!(
                "ticket names {} chunk_ids; at most {MAX_TICKET_IDS} per request",
                t.chunk_ids.len()
            )));
        }
        let scope = ScopeFilter::new(Some(&t.scope()))?;
        self.catalog.in_scope(&scope)?;
        Ok(scope)
    }

    /// The rows of the requested chunks that the ticket's scope allows (blocking), in batches of
    /// [`codeintel_core::wire::served_schema`]: each row with its version's git commit and
    /// whether its file on disk still has the indexed content.
    pub fn fetch(&self, ticket: &HydrateTicket) -> Result<Vec<RecordBatch>, HydrateError> {
        let scope = self.validate(ticket)?;
        // A DuckDB connection only for versions not held in memory.
        let mut conn: Option<duckdb::Connection> = None;
        let mut out = Vec::new();
        for repo in self.catalog.snapshot().iter().filter(|l| scope.allows_repo(&l.manifest.repo)) {
            let files = &repo.value.files;
            let ids: Vec<u64> =
                ticket.chunk_ids.iter().copied().filter(|id| !repo.value.tombstones.contains(id)).collect();
            if ids.is_empty() {
                continue;
            }
            let batches = match &repo.value.rows {
                Some(rows) => vec![rows.take(&ids)?],
                None => {
                    if conn.is_none() {
                        conn = Some(self.db.lock().try_clone()?);
                    }
                    Self::query_rows(conn.as_ref().expect("connected above"), files, &ids, &scope)?
                }
            };
            let m = &repo.manifest;
            let commit = m.git.as_ref().map(|g| g.commit.as_str()).unwrap_or("");
            let mut stale_files: std::collections::HashMap<String, bool> = Default::default();
            for b in batches {
                let b = if scope.filters_chunks() { filter_paths(&b, &scope)? } else { b };
                if b.num_rows() == 0 {
                    continue;
                }
                let stale: Vec<bool> = utf8(&b, "path")?
                    .iter()
                    .map(|p| {
                        let p = p.unwrap_or("");
                        *stale_files.entry(p.to_string()).or_insert_with(|| match m.file_hashes.get(p) {
                            Some(hash) => self.freshness.check(&m.source, p, hash).stale(),
                            None => false,
                        })
                    })
                    .collect();
                out.push(codeintel_core::wire::with_served(&b, commit, stale)?);
            }
        }
        Ok(out)
    }
}

/// A string column of a batch as Utf8, whatever string type DuckDB returned.
fn utf8(b: &RecordBatch, name: &str) -> Result<StringArray, HydrateError> {
    let a = b.column_by_name(name).ok_or_else(|| HydrateError::Internal(format!("no column {name}")))?;
    let a = arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8)
        .map_err(|e| HydrateError::Internal(e.to_string()))?;
    Ok(a.as_any().downcast_ref::<StringArray>().cloned().expect("utf8 after cast"))
}

impl ChunkStore {
    /// The rows of `ids` through DuckDB (`hydrate.in_memory` off), languages filtered there.
    fn query_rows(
        conn: &duckdb::Connection,
        files: &[PathBuf],
        ids: &[u64],
        scope: &ScopeFilter,
    ) -> Result<Vec<RecordBatch>, HydrateError> {
        let file_params = vec!["?"; files.len()].join(", ");
        let id_params = vec!["?"; ids.len()].join(", ");
        // DISTINCT: a chunk that came back after being deleted has identical rows in an old
        // and a new segment (its id is a hash of its content and place).
        let mut sql = format!(
            "SELECT DISTINCT {} FROM read_parquet([{file_params}]) WHERE chunk_id IN ({id_params})",
            codeintel_core::wire::column_list()
        );
        let mut params: Vec<DbValue> = files.iter().map(|f| DbValue::Text(f.display().to_string())).collect();
        params.extend(ids.iter().map(|&id| DbValue::UBigInt(id)));
        if !scope.languages.is_empty() {
            sql.push_str(&format!(" AND language IN ({})", vec!["?"; scope.languages.len()].join(", ")));
            params.extend(scope.languages.iter().map(|l| DbValue::Text(l.clone())));
        }
        sql.push_str(" ORDER BY chunk_id");
        let mut stmt = conn.prepare(&sql)?;
        Ok(stmt.query_arrow(duckdb::params_from_iter(params))?.collect())
    }
}

/// Applies the path globs (and languages) of `scope` to a batch.
fn filter_paths(b: &RecordBatch, scope: &ScopeFilter) -> Result<RecordBatch, HydrateError> {
    let col = |name: &str| utf8(b, name);
    let (repo, path, lang) = (col("repo")?, col("path")?, col("language")?);
    let mask: BooleanArray =
        (0..b.num_rows()).map(|i| Some(scope.allows(repo.value(i), path.value(i), lang.value(i)))).collect();
    arrow::compute::filter_record_batch(b, &mask).map_err(|e| HydrateError::Internal(e.to_string()))
}

impl ChunkStore {
    /// Chunks per repo, for ListFlights.
    pub fn repos(&self) -> Vec<(String, u64)> {
        self.catalog.snapshot().iter().map(|l| (l.manifest.repo.clone(), l.value.chunks)).collect()
    }
}
