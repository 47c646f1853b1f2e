//! Versioned manifests. A repo's data lives under `<root>/<repo>/`; every artifact is written
//! under a new versioned name, fsynced, then `manifests/vNNNNNN.json` is written (temp + rename)
//! and finally `CURRENT` is replaced by rename. A reader that follows `CURRENT` therefore sees a
//! complete version or the previous one, never a half-written one.
//!
//! Everything under the data root is private to its owner: folders 0700, files 0600 (the
//! segments hold the indexed code). The writers create them so, and [`publish`] tightens a
//! repo's folder, whatever libraries (FAISS, tantivy) or older versions left readable.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use codeintel_core::EmbeddingContract;
use serde::{Deserialize, Serialize};

pub const CURRENT: &str = "CURRENT";
pub const MANIFEST_FORMAT: u32 = 1;

/// One FAISS index with its sidecars, all repo-relative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorFiles {
    pub faiss_index: String,
    /// Chunk id, path and language of every vector, in insertion order.
    pub chunk_meta: String,
    /// The raw f32 vectors in `chunk_meta` order, for retraining without re-embedding.
    pub vectors: String,
    /// `flat`, `ivf<nlist>_sq8` or `ivf<nlist>_pq<m>`.
    pub kind: String,
    pub count: u64,
}

fn one() -> u32 {
    1
}

/// How a version's artifacts were made: what its vectors mean, how its chunks were cut and
/// its lexical and sparse documents built. A later run updates a version in place of a rebuild
/// only when these match its own ([`BuildSettings::updatable`]); vectors are reused when the
/// embedding part matches ([`BuildSettings::vectors_compatible`]). Stored flattened in the
/// manifest, so a new setting is one field here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildSettings {
    pub embedding: EmbeddingContract,
    /// Version of the text each chunk was embedded as (see `chunk::EMBED_TEXT_FORMAT`);
    /// vectors are reused across versions only when it matches.
    #[serde(default)]
    pub embed_text_format: u32,
    /// Word-pieces each chunk was truncated to before embedding (`embed.max_tokens`).
    #[serde(default)]
    pub embed_max_tokens: u32,
    /// Texts embedded per chunk and averaged into its vector: 1 (the code), 2 (the code and
    /// the name view, `embed.name_view`).
    #[serde(default = "one")]
    pub embed_views: u32,
    /// Schema version of the tantivy index (`lexical::LEXICAL_FORMAT`); incremental updates
    /// need the previous version's to match.
    #[serde(default)]
    pub lexical_format: u32,
    /// How files were cut into chunks (`ChunkOptions::key`); incremental updates need the
    /// previous version's to match, or old and new chunks would not line up.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chunking: String,
    /// `<model id>/<max tokens>/<max terms>/t<embedding text format>` the sparse documents were
    /// encoded with; empty when sparse indexing is off.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sparse_model: String,
}

impl BuildSettings {
    /// Whether vectors made under `self` mean what vectors made under `other` do (same model,
    /// texts, views and truncation).
    pub fn vectors_compatible(&self, other: &BuildSettings) -> bool {
        self.embedding == other.embedding
            && self.embed_text_format == other.embed_text_format
            && self.embed_max_tokens == other.embed_max_tokens
            && self.embed_views == other.embed_views
    }

    /// Settings that record only what the vectors mean, for versions whose other artifacts
    /// were made outside the drivers (tests, benchmarks): a later run never updates such a
    /// version in place, it rebuilds it (reusing the vectors when they are compatible).
    pub fn vectors_only(embedding: EmbeddingContract) -> Self {
        BuildSettings {
            embedding,
            embed_text_format: codeintel_core::chunk::EMBED_TEXT_FORMAT,
            embed_max_tokens: 256,
            embed_views: 1,
            lexical_format: 0,
            chunking: String::new(),
            sparse_model: String::new(),
        }
    }

    /// Whether a version built under `self` can be updated by a run under `other` in place of
    /// a rebuild: every setting equal.
    pub fn updatable(&self, other: &BuildSettings) -> bool {
        self == other
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub repo: String,
    pub version: u64,
    pub created_unix_ms: u64,
    /// Where the repository was indexed from (informational).
    pub source: String,
    /// The git commit the indexed folder was at, when it is a git work tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitInfo>,
    #[serde(flatten)]
    pub settings: BuildSettings,
    /// Paths relative to the repo folder.
    pub segments: Vec<String>,
    /// The primary vector index (`chunk_meta` is its sidecar).
    pub faiss_index: String,
    pub chunk_meta: String,
    /// Raw vectors and kind of the primary (absent in versions written before compaction existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_vectors: Option<String>,
    #[serde(default)]
    pub primary_kind: String,
    /// The untrained (Flat) index of vectors added since the primary was built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<VectorFiles>,
    /// Sorted little-endian u64 chunk ids that are dead but still present in the primary or in
    /// a segment; every store drops them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstones: Option<String>,
    #[serde(default)]
    pub tombstoned: u64,
    pub tantivy_dir: String,
    /// SPLADE documents (`sparse::write_docs` files), oldest first: a later file's copy of a
    /// chunk wins and tombstoned chunk ids are dropped. Empty when sparse indexing is off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sparse: Vec<String>,
    /// Live chunks.
    pub chunks: u64,
    pub files: u64,
    /// repo-relative path -> sha256 of its content, for incremental indexing.
    pub file_hashes: BTreeMap<String, String>,
    /// Every file of this version (repo-relative, the tantivy folder's files included) -> its
    /// sha256, written by [`publish`]. Services check the files they read against it before
    /// serving a version ([`verify`]), and against it downloads from an object store
    /// ([`crate::remote`]). Empty in manifests written before checksums were kept: those are
    /// served unchecked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
}

/// The git state of an indexed folder: HEAD's commit and branch, and whether the indexed files
/// differ from HEAD's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitInfo {
    pub commit: String,
    /// HEAD's branch (`main`), or the branch or tag `--rev` named; empty when HEAD is detached
    /// or `--rev` was a commit id or an expression.
    #[serde(default)]
    pub branch: String,
    /// Some indexed file differs from HEAD's or is not in HEAD.
    #[serde(default)]
    pub dirty: bool,
    #[serde(default)]
    pub changed_files: u64,
}

/// The first version of a repo's artifacts (or a full rebuild's): one segment, one primary,
/// one lexical index, at most one sparse file.
#[derive(Debug, Clone)]
pub struct FirstArtifacts {
    /// Oldest first (a full build writes one).
    pub segments: Vec<String>,
    pub primary: VectorFiles,
    pub tantivy_dir: String,
    pub sparse: Option<String>,
}

impl Manifest {
    /// The manifest of a full build: the one place a manifest is made from nothing. Later
    /// versions start from their predecessor (`Manifest { .., ..prev }`).
    pub fn new(
        repo: &str,
        version: u64,
        source: String,
        settings: BuildSettings,
        a: FirstArtifacts,
        file_hashes: BTreeMap<String, String>,
    ) -> Self {
        Manifest {
            format: MANIFEST_FORMAT,
            repo: repo.to_string(),
            version,
            created_unix_ms: now_unix_ms(),
            source,
            git: None,
            settings,
            segments: a.segments,
            chunks: a.primary.count,
            faiss_index: a.primary.faiss_index,
            chunk_meta: a.primary.chunk_meta,
            primary_vectors: Some(a.primary.vectors),
            primary_kind: a.primary.kind,
            secondary: None,
            tombstones: None,
            tombstoned: 0,
            tantivy_dir: a.tantivy_dir,
            sparse: a.sparse.into_iter().collect(),
            files: file_hashes.len() as u64,
            file_hashes,
            checksums: BTreeMap::new(),
        }
    }

    /// The embedding contract of this version's vectors.
    pub fn embedding(&self) -> &EmbeddingContract {
        &self.settings.embedding
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("repo {0} has no published index: run `codeintel index PATH --repo {0}`")]
    NotIndexed(String),
    #[error("invalid repo name {0:?}: use 1 to 128 letters, digits, '-', '_' and '.', not starting with '.'")]
    BadRepoName(String),
    #[error("{path}: {message}")]
    Corrupt { path: String, message: String },
    #[error("io error at {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ManifestError + '_ {
    move |source| ManifestError::Io { path: path.display().to_string(), source }
}

/// Repo names become folder names: keep them to a safe alphabet so no request escapes the root.
pub fn validate_repo_name(name: &str) -> Result<(), ManifestError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ManifestError::BadRepoName(name.to_string()))
    }
}

pub fn repo_dir(root: &Path, repo: &str) -> Result<PathBuf, ManifestError> {
    validate_repo_name(repo)?;
    Ok(root.join(repo))
}

pub fn version_name(version: u64) -> String {
    format!("v{version:06}")
}

/// Reads the published manifest of `repo`, following `CURRENT`.
pub fn load_current(root: &Path, repo: &str) -> Result<Manifest, ManifestError> {
    let dir = repo_dir(root, repo)?;
    let cur = dir.join(CURRENT);
    let name = match fs::read_to_string(&cur) {
        Ok(s) => s.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ManifestError::NotIndexed(repo.into())),
        Err(e) => return Err(io_err(&cur)(e)),
    };
    read_manifest(&dir.join("manifests").join(format!("{name}.json")))
}

fn read_manifest(path: &Path) -> Result<Manifest, ManifestError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    let m: Manifest = serde_json::from_str(&text)
        .map_err(|e| ManifestError::Corrupt { path: path.display().to_string(), message: e.to_string() })?;
    if m.format != MANIFEST_FORMAT {
        return Err(ManifestError::Corrupt {
            path: path.display().to_string(),
            message: format!("format {} is not supported (expected {MANIFEST_FORMAT})", m.format),
        });
    }
    Ok(m)
}

/// The version `CURRENT` names, without reading the manifest (cheap, for reload polling).
pub fn current_version_name(root: &Path, repo: &str) -> Option<String> {
    fs::read_to_string(root.join(repo).join(CURRENT)).ok().map(|s| s.trim().to_string())
}

/// Repos under `root` that have a published version, sorted.
pub fn list_repos(root: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(root) else { return Vec::new() };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(CURRENT).is_file())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| validate_repo_name(n).is_ok())
        .collect();
    v.sort();
    v
}

/// The next version number for `repo` (one past the highest manifest on disk).
pub fn next_version(root: &Path, repo: &str) -> Result<u64, ManifestError> {
    repo_dir(root, repo)?;
    Ok(list_versions(root, repo).first().map_or(1, |v| v + 1))
}

/// Mode of the folders under the data root.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of the files under the data root.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// `create_dir_all`, each folder it creates private ([`PRIVATE_DIR_MODE`]); folders that exist
/// are left as they are.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR_MODE).create(dir)
}

/// `File::create`, private ([`PRIVATE_FILE_MODE`]) when the file is new.
pub fn create_private_file(path: &Path) -> std::io::Result<File> {
    fs::OpenOptions::new().write(true).create(true).truncate(true).mode(PRIVATE_FILE_MODE).open(path)
}

/// Takes every group and other permission off `dir` and everything under it (folders become
/// 0700, files 0600 when they were 0755 and 0644), whatever created them; symlinks are not
/// followed, and what vanishes meanwhile is skipped.
pub fn restrict_tree(dir: &Path) -> Result<(), ManifestError> {
    restrict(dir)?;
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            restrict_tree(&e.path())?;
        } else if t.is_file() {
            restrict(&e.path())?;
        }
    }
    Ok(())
}

fn restrict(path: &Path) -> Result<(), ManifestError> {
    let mode = match fs::symlink_metadata(path) {
        Ok(m) => m.permissions().mode(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path)(e)),
    };
    if mode & 0o077 == 0 {
        return Ok(());
    }
    match fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

pub fn fsync_file(path: &Path) -> Result<(), ManifestError> {
    File::open(path).and_then(|f| f.sync_all()).map_err(io_err(path))
}

/// Fsyncs every file under `dir` (for artifacts written by libraries, such as tantivy).
pub fn fsync_tree(dir: &Path) -> Result<(), ManifestError> {
    for e in fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
        let p = e.path();
        if p.is_dir() {
            fsync_tree(&p)?;
        } else {
            fsync_file(&p)?;
        }
    }
    fsync_dir(dir)
}

fn fsync_dir(dir: &Path) -> Result<(), ManifestError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io_err(dir))
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ManifestError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = create_private_file(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(parent) = path.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

impl Manifest {
    /// Every file this version reads (the tantivy folder aside), repo-relative.
    pub fn files(&self) -> Vec<&String> {
        let mut v: Vec<&String> = self.segments.iter().collect();
        v.extend([&self.faiss_index, &self.chunk_meta]);
        v.extend(self.primary_vectors.iter());
        if let Some(s) = &self.secondary {
            v.extend([&s.faiss_index, &s.chunk_meta, &s.vectors]);
        }
        v.extend(self.tombstones.iter());
        v.extend(self.sparse.iter());
        v
    }
}

/// Writes a sorted id list (little-endian u64), fsynced.
pub fn write_ids(path: &Path, ids: &[u64]) -> Result<(), ManifestError> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if let Some(parent) = path.parent() {
        create_private_dir_all(parent).map_err(io_err(parent))?;
    }
    let bytes: Vec<u8> = sorted.iter().flat_map(|i| i.to_le_bytes()).collect();
    let mut f = create_private_file(path).map_err(io_err(path))?;
    f.write_all(&bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

pub fn read_ids(path: &Path) -> Result<Vec<u64>, ManifestError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    if !bytes.len().is_multiple_of(8) {
        return Err(ManifestError::Corrupt {
            path: path.display().to_string(),
            message: format!("{} bytes is not a whole number of u64 ids", bytes.len()),
        });
    }
    Ok(bytes.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).collect())
}

/// The tombstoned chunk ids of a version (empty when it has none).
pub fn tombstones(repo_dir: &Path, m: &Manifest) -> Result<std::collections::HashSet<u64>, ManifestError> {
    match &m.tombstones {
        Some(rel) => Ok(read_ids(&repo_dir.join(rel))?.into_iter().collect()),
        None => Ok(Default::default()),
    }
}

/// Publishes `m`: every artifact it names must already be written and fsynced. Makes the repo's
/// folder private ([`restrict_tree`]), writes the manifest, then atomically points `CURRENT` at
/// it.
pub fn publish(root: &Path, m: &Manifest) -> Result<PathBuf, ManifestError> {
    let dir = repo_dir(root, &m.repo)?;
    let mdir = dir.join("manifests");
    create_private_dir_all(&mdir).map_err(io_err(&mdir))?;
    for rel in m.files().into_iter().chain([&m.tantivy_dir]) {
        let p = dir.join(rel);
        if !p.exists() {
            return Err(ManifestError::Corrupt {
                path: p.display().to_string(),
                message: "artifact named by the manifest is missing; refusing to publish".into(),
            });
        }
    }
    // Before the version is visible: what FAISS and tantivy wrote, and folders made before
    // the data root was private (a repo indexed when its folder was 0755), lose group and
    // other access.
    restrict_tree(&dir)?;
    let name = version_name(m.version);
    let path = mdir.join(format!("{name}.json"));
    // Every file's checksum: a file this version shares with its predecessor keeps the sum
    // recorded then (published files are never written again), every other one is hashed.
    let mut checksums = BTreeMap::new();
    for rel in version_files(&dir, m)? {
        let sum = match m.checksums.get(&rel) {
            Some(s) => s.clone(),
            None => sha256_file(&dir.join(&rel))?,
        };
        checksums.insert(rel, sum);
    }
    let json = serde_json::to_vec_pretty(&Manifest { checksums, ..m.clone() }).expect("manifest serializes");
    write_atomic(&path, &json)?;
    write_atomic(&dir.join(CURRENT), format!("{name}\n").as_bytes())?;
    Ok(path)
}

/// Every file of version `m` under `dir` (its repo folder), repo-relative and sorted: the
/// artifacts it names and every file of its tantivy folder.
pub fn version_files(dir: &Path, m: &Manifest) -> Result<Vec<String>, ManifestError> {
    let mut out: Vec<String> = m.files().into_iter().cloned().collect();
    // A vector-only version (benchmarks) names a file as its tantivy folder.
    let mut stack: Vec<PathBuf> = vec![dir.join(&m.tantivy_dir)].into_iter().filter(|p| p.is_dir()).collect();
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io_err(&d))? {
            let p = e.map_err(io_err(&d))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The hex sha256 of a file's content, streamed.
pub fn sha256_file(path: &Path) -> Result<String, ManifestError> {
    use sha2::Digest;
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Which service reads a version, for [`verify`]: each checks only the files it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// FAISS indexes, chunk metadata, vectors, tombstones.
    Vector,
    /// The tantivy folder, SPLADE documents, tombstones.
    Lexical,
    /// Parquet segments, tombstones.
    Hydrate,
}

impl Manifest {
    /// Whether `rel` (repo-relative) is a file `reader` opens.
    pub fn read_by(&self, rel: &str, reader: Reader) -> bool {
        let is = |f: &Option<String>| f.as_deref() == Some(rel);
        if is(&self.tombstones) {
            return true;
        }
        match reader {
            Reader::Vector => {
                rel == self.faiss_index
                    || rel == self.chunk_meta
                    || is(&self.primary_vectors)
                    || self
                        .secondary
                        .as_ref()
                        .is_some_and(|s| [&s.faiss_index, &s.chunk_meta, &s.vectors].contains(&&rel.to_string()))
            }
            Reader::Lexical => {
                self.sparse.iter().any(|s| s == rel)
                    || rel.strip_prefix(self.tantivy_dir.as_str()).is_some_and(|r| r.starts_with('/'))
            }
            Reader::Hydrate => self.segments.iter().any(|s| s == rel),
        }
    }
}

/// What this process last found hashing a file: its inode, size, mtime and ctime then, and
/// its sha256.
struct Checked {
    stamp: (u64, u64, i64, i64, i64, i64),
    sha256: String,
}

fn stamp(md: &fs::Metadata) -> (u64, u64, i64, i64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (md.ino(), md.len(), md.mtime(), md.mtime_nsec(), md.ctime(), md.ctime_nsec())
}

/// Files hashed by this process, so that a version is hashed once rather than on every reload
/// poll, and again only when a file's inode, size, mtime or ctime changes.
static CHECKED: std::sync::LazyLock<parking_lot::Mutex<std::collections::HashMap<PathBuf, Checked>>> =
    std::sync::LazyLock::new(Default::default);

/// The sha256 of `path`, from [`CHECKED`] when its size and mtime have not changed.
fn sha256_checked(path: &Path, md: &fs::Metadata) -> Result<String, ManifestError> {
    if let Some(c) = CHECKED.lock().get(path) {
        if c.stamp == stamp(md) {
            return Ok(c.sha256.clone());
        }
    }
    let sha256 = sha256_file(path)?;
    let mut cache = CHECKED.lock();
    if cache.len() >= 100_000 {
        cache.retain(|p, _| p.exists()); // files of collected versions
    }
    cache.insert(path.to_path_buf(), Checked { stamp: stamp(md), sha256: sha256.clone() });
    Ok(sha256)
}

/// Checks every file `reader` opens against the sha256 the manifest recorded when it was
/// published: a file missing, or changed or damaged since, refuses the version with the file
/// named. Returns the bytes checked. A manifest without checksums (written before they were
/// kept) passes unchecked. Each file is hashed once per process unless its inode, size,
/// mtime or ctime changes.
pub fn verify(repo_dir: &Path, m: &Manifest, reader: Reader) -> Result<u64, ManifestError> {
    let mut bytes = 0;
    for (rel, want) in m.checksums.iter().filter(|(rel, _)| m.read_by(rel, reader)) {
        let path = repo_dir.join(rel);
        let corrupt = |message: String| ManifestError::Corrupt { path: path.display().to_string(), message };
        let md = match fs::metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt(format!("missing, though version {} names it", m.version)))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let got = sha256_checked(&path, &md)?;
        if &got != want {
            return Err(corrupt(format!(
                "sha256 {got} differs from the {want} recorded when version {} was published: the file was damaged or \
                 written since, so the version is refused (the next `codeintel index` of the repo rebuilds it from scratch)",
                m.version
            )));
        }
        bytes += md.len();
    }
    Ok(bytes)
}

/// Every published version of `repo`, newest first.
pub fn list_versions(root: &Path, repo: &str) -> Vec<u64> {
    let Ok(dir) = repo_dir(root, repo) else { return Vec::new() };
    let Ok(rd) = fs::read_dir(dir.join("manifests")) else { return Vec::new() };
    let mut v: Vec<u64> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_prefix('v').and_then(|s| s.strip_suffix(".json")).and_then(|s| s.parse().ok())
        })
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

/// Reads one version's manifest by number.
pub fn load_version(root: &Path, repo: &str, version: u64) -> Result<Manifest, ManifestError> {
    let path = repo_dir(root, repo)?.join("manifests").join(format!("{}.json", version_name(version)));
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text)
        .map_err(|e| ManifestError::Corrupt { path: path.display().to_string(), message: e.to_string() })
}

/// Deletes old versions of `repo`: the newest `keep` versions always stay, and an older one goes
/// only once its successor has been published for `grace_ms` (serving processes poll `CURRENT`
/// and may still be reading it until then). Artifacts go first, the manifest last, so an
/// interrupted collection is finished by the next one. Returns the versions removed.
pub fn collect_garbage(root: &Path, repo: &str, keep: usize, grace_ms: u64) -> Result<Vec<u64>, ManifestError> {
    let dir = repo_dir(root, repo)?;
    let current = load_current(root, repo)?.version;
    let mut versions: Vec<u64> = fs::read_dir(dir.join("manifests"))
        .map_err(io_err(&dir))?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_prefix('v').and_then(|s| s.strip_suffix(".json")).and_then(|s| s.parse::<u64>().ok())
        })
        .filter(|v| *v < current)
        .collect();
    versions.sort_unstable();
    let now = now_unix_ms();
    let candidates = versions.len().saturating_sub(keep.saturating_sub(1));
    // Which old versions go: those replaced longer than the grace period ago.
    let mut doomed = Vec::new();
    for &v in &versions[..candidates] {
        let Ok(m) = load_version(root, repo, v) else { continue };
        let successor = versions.iter().copied().find(|x| *x > v).unwrap_or(current);
        let replaced_at = load_version(root, repo, successor).map(|s| s.created_unix_ms).unwrap_or(now);
        if now.saturating_sub(replaced_at) >= grace_ms {
            doomed.push(m);
        }
    }
    // Incremental versions share files with their predecessors: a file goes only when no
    // version that stays names it.
    let mut in_use: std::collections::HashSet<String> = std::collections::HashSet::new();
    for v in versions.iter().chain([&current]).filter(|v| !doomed.iter().any(|m| m.version == **v)) {
        if let Ok(m) = load_version(root, repo, *v) {
            in_use.extend(m.files().into_iter().cloned());
        }
    }
    let mut removed = Vec::new();
    for m in doomed {
        for rel in m.files().into_iter().filter(|f| !in_use.contains(*f)) {
            let p = dir.join(rel);
            if let Err(e) = fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(io_err(&p)(e));
                }
            }
        }
        let t = dir.join(&m.tantivy_dir);
        if t.exists() {
            fs::remove_dir_all(&t).map_err(io_err(&t))?;
        }
        let mp = dir.join("manifests").join(format!("{}.json", version_name(m.version)));
        fs::remove_file(&mp).map_err(io_err(&mp))?;
        removed.push(m.version);
    }
    Ok(removed)
}

pub use codeintel_core::now_unix_ms;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn manifest(repo: &str, version: u64) -> Manifest {
        let v = version_name(version);
        let contract = EmbeddingContract {
            model_id: "m".into(),
            dim: 4,
            metric: "inner_product".into(),
            normalized: true,
            weights_sha256: String::new(),
        };
        let primary = VectorFiles {
            faiss_index: format!("vector/{v}.faiss"),
            chunk_meta: format!("vector/{v}.meta.json"),
            vectors: format!("vector/{v}.f32"),
            kind: "flat".into(),
            count: version,
        };
        let a = FirstArtifacts {
            segments: vec![format!("segments/{v}.parquet")],
            primary,
            tantivy_dir: format!("lexical/{v}"),
            sparse: None,
        };
        let files = BTreeMap::from([("a.py".to_string(), "h".to_string())]);
        let m = Manifest::new(repo, version, ".".into(), BuildSettings::vectors_only(contract), a, files);
        Manifest { created_unix_ms: 0, primary_vectors: None, ..m }
    }

    pub(crate) fn write_artifacts(root: &Path, m: &Manifest) {
        let dir = root.join(&m.repo);
        for rel in m.segments.iter().chain([&m.faiss_index, &m.chunk_meta]) {
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, b"x").unwrap();
        }
        fs::create_dir_all(dir.join(&m.tantivy_dir)).unwrap();
    }

    #[test]
    fn a_version_is_visible_only_once_complete() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        assert!(matches!(load_current(root, "r"), Err(ManifestError::NotIndexed(_))));
        let m1 = manifest("r", 1);
        // Artifacts missing: publishing must refuse and leave nothing visible.
        assert!(publish(root, &m1).is_err());
        assert!(matches!(load_current(root, "r"), Err(ManifestError::NotIndexed(_))));
        write_artifacts(root, &m1);
        publish(root, &m1).unwrap();
        let loaded = load_current(root, "r").unwrap();
        // Published with every file's checksum ("x" each), and otherwise as given.
        let x = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";
        assert_eq!(loaded.checksums.len(), 3, "{:?}", loaded.checksums);
        assert!(loaded.checksums.values().all(|s| s == x), "{:?}", loaded.checksums);
        assert_eq!(Manifest { checksums: BTreeMap::new(), ..loaded }, m1);
        assert_eq!(next_version(root, "r").unwrap(), 2);

        // Version 2 half-written (manifest present but CURRENT not yet renamed): still v1.
        let m2 = manifest("r", 2);
        write_artifacts(root, &m2);
        fs::write(root.join("r/manifests/v000002.json"), serde_json::to_vec(&m2).unwrap()).unwrap();
        fs::write(root.join("r/CURRENT.tmp"), "v000002\n").unwrap();
        assert_eq!(load_current(root, "r").unwrap().version, 1);
        publish(root, &m2).unwrap();
        assert_eq!(load_current(root, "r").unwrap().version, 2);
        assert_eq!(list_repos(root), vec!["r".to_string()]);
    }

    #[test]
    fn each_reader_checks_its_own_files_and_a_damaged_one_refuses_the_version_by_name() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let m = manifest("r", 1);
        write_artifacts(root, &m);
        fs::write(root.join("r/lexical/v000001/meta.json"), b"{}").unwrap();
        publish(root, &m).unwrap();
        let m = load_current(root, "r").unwrap();
        let dir = root.join("r");
        assert!(m.checksums.contains_key("lexical/v000001/meta.json"), "{:?}", m.checksums);
        for reader in [Reader::Vector, Reader::Lexical, Reader::Hydrate] {
            assert!(verify(&dir, &m, reader).unwrap() > 0, "{reader:?}");
        }
        // The segment rewritten: hydrate-svc refuses the version and names the file; vector-svc
        // and lexical-svc do not read it.
        fs::write(dir.join("segments/v000001.parquet"), b"yy").unwrap();
        let e = verify(&dir, &m, Reader::Hydrate).unwrap_err().to_string();
        assert!(e.contains("segments/v000001.parquet") && e.contains("sha256"), "{e}");
        verify(&dir, &m, Reader::Vector).unwrap();
        verify(&dir, &m, Reader::Lexical).unwrap();
        // A file of the tantivy folder is lexical-svc's; a missing one is named too.
        fs::remove_file(dir.join("lexical/v000001/meta.json")).unwrap();
        let e = verify(&dir, &m, Reader::Lexical).unwrap_err().to_string();
        assert!(e.contains("lexical/v000001/meta.json") && e.contains("missing"), "{e}");
        // Manifests from before checksums pass unchecked.
        let old = Manifest { checksums: BTreeMap::new(), ..m };
        assert_eq!(verify(&dir, &old, Reader::Hydrate).unwrap(), 0);
    }

    #[test]
    fn garbage_collection_keeps_recent_versions_and_respects_the_grace_period() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for v in 1..=4 {
            let mut m = manifest("r", v);
            m.created_unix_ms = now_unix_ms() - 1_000_000 + v * 1000;
            write_artifacts(root, &m);
            publish(root, &m).unwrap();
        }
        // A long grace period: versions replaced ~1000 s ago stay.
        assert!(collect_garbage(root, "r", 2, 10_000_000).unwrap().is_empty());
        assert_eq!(collect_garbage(root, "r", 2, 0).unwrap(), vec![1, 2]);
        for v in [1, 2] {
            let name = version_name(v);
            assert!(!root.join(format!("r/segments/{name}.parquet")).exists());
            assert!(!root.join(format!("r/lexical/{name}")).exists());
            assert!(!root.join(format!("r/manifests/{name}.json")).exists());
        }
        assert!(root.join("r/segments/v000003.parquet").exists(), "the previous version stays");
        assert_eq!(load_current(root, "r").unwrap().version, 4);
        assert!(collect_garbage(root, "r", 2, 0).unwrap().is_empty(), "idempotent");
    }

    #[test]
    fn garbage_collection_keeps_files_that_a_newer_version_still_names() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let old = now_unix_ms() - 1_000_000;
        let mut m1 = manifest("r", 1);
        m1.created_unix_ms = old;
        write_artifacts(root, &m1);
        publish(root, &m1).unwrap();
        // v2 is incremental: v1's segment and primary plus its own segment and tombstones.
        let mut m2 = manifest("r", 2);
        m2.created_unix_ms = old + 1000;
        m2.segments = vec![m1.segments[0].clone(), "segments/v000002.parquet".into()];
        m2.faiss_index = m1.faiss_index.clone();
        m2.chunk_meta = m1.chunk_meta.clone();
        m2.tombstones = Some("tombstones/v000002.ids".into());
        write_artifacts(root, &m2);
        write_ids(&root.join("r/tombstones/v000002.ids"), &[9, 3, 3]).unwrap();
        publish(root, &m2).unwrap();
        let m3 = Manifest { version: 3, created_unix_ms: old + 2000, ..m2.clone() };
        fs::create_dir_all(root.join("r/lexical/v000003")).unwrap();
        let m3 = Manifest { tantivy_dir: "lexical/v000003".into(), ..m3 };
        publish(root, &m3).unwrap();
        assert_eq!(collect_garbage(root, "r", 1, 0).unwrap(), vec![1, 2]);
        for f in m3.files() {
            assert!(root.join("r").join(f).exists(), "{f} is still named by v3");
        }
        assert!(!root.join("r/lexical/v000001").exists());
        assert_eq!(tombstones(&root.join("r"), &m3).unwrap(), [3u64, 9].into_iter().collect());
    }

    #[test]
    fn hostile_repo_names_are_refused() {
        let long = "a".repeat(200);
        let bad_names =
            ["", "..", "../etc", "../x", "a/b", "a\\b", "/abs", ".hidden", "a b", " a", "x\0", "a\0b", "a\nb"];
        for bad in bad_names.into_iter().chain([long.as_str()]) {
            let err = validate_repo_name(bad).unwrap_err().to_string();
            assert!(err.contains("letters, digits") && err.contains("128"), "{bad:?}: {err}");
        }
        assert!(validate_repo_name("my-repo_1.2").is_ok());
        assert!(validate_repo_name(&"a".repeat(128)).is_ok());
        assert!(validate_repo_name(&"a".repeat(129)).is_err());
        assert!(repo_dir(Path::new("/data"), "../x").is_err(), "no path is made of a bad name");
    }

    #[test]
    fn publishing_makes_the_repo_folder_private() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("data");
        let m = manifest("r", 1);
        write_artifacts(&root, &m);
        // As a library (or an older version, or a umask of 022) may have left them.
        let seg = root.join("r").join(&m.segments[0]);
        fs::set_permissions(&seg, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(root.join("r"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(root.join("r/lexical"), fs::Permissions::from_mode(0o775)).unwrap();
        publish(&root, &m).unwrap();
        fn mode(p: &Path) -> u32 {
            fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
        }
        let r = root.join("r");
        for dir in [r.clone(), r.join("manifests"), r.join("segments"), r.join("lexical"), r.join(&m.tantivy_dir)] {
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        }
        for file in [seg, r.join(&m.faiss_index), r.join("manifests/v000001.json"), r.join(CURRENT)] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        let ids = r.join("tombstones/x.ids");
        write_ids(&ids, &[1]).unwrap();
        assert_eq!((mode(&ids), mode(&r.join("tombstones"))), (0o600, 0o700));
        let made = root.join("new/a/b");
        create_private_dir_all(&made).unwrap();
        assert_eq!((mode(&root.join("new")), mode(&made)), (0o700, 0o700));
    }
}
