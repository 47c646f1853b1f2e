//! Chunk lookups through DuckDB over the published Parquet segments. One shared in-memory
//! database; every request works on its own connection cloned from it (DuckDB connections are
//! not shared across threads). All values from requests are bound as parameters.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{BooleanArray, StringArray};
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
}

impl ChunkStore {
    pub fn new(cfg: &Config) -> Result<Arc<Self>, HydrateError> {
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
            Ok(RepoSegments { files, chunks: m.chunks, tombstones, has_refs })
        });
        let served = self.catalog.snapshot().len();
        *self.readiness.write() = Readiness::of_repos(served, self.catalog.errors(), Vec::new());
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
        let conn = self.db.lock().try_clone()?;
        let mut out = Vec::new();
        for repo in self.catalog.snapshot().iter().filter(|l| scope.allows_repo(&l.manifest.repo)) {
            let files = &repo.value.files;
            let ids: Vec<u64> =
                ticket.chunk_ids.iter().copied().filter(|id| !repo.value.tombstones.contains(id)).collect();
            if ids.is_empty() {
                continue;
            }
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
            let batches: Vec<RecordBatch> = stmt.query_arrow(duckdb::params_from_iter(params))?.collect();
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
