//! A data root in an object store (`data.root = "s3://bucket/prefix"`), mirrored to a local
//! folder that every process reads and writes exactly as it would a local data root.
//!
//! Layout in the store is the local one: `<prefix>/<repo>/CURRENT`, `manifests/<v>.json` and
//! the artifacts the manifest names. A version's manifest in the store carries the sha256 of
//! every file of the version ([`Manifest::checksums`]).
//!
//! - `codeintel index` pulls the repo's current version (so an incremental build starts from
//!   it), builds and publishes locally, then [`Remote::push`]es: the version's files missing
//!   from the store, then its manifest, then `CURRENT` last. A version is visible only once
//!   complete, as on a local disk.
//! - Services [`Remote::pull`] every `reload_ms`: a new `CURRENT` in the store makes them
//!   download the version's files they lack (each to a `.part` file, checksummed, then renamed)
//!   and only then point the local `CURRENT` at it; the catalog swaps as it does for a local
//!   publish. Until then, and after any failed or interrupted download, the previous version
//!   keeps serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use codeintel_config::Config;
use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::manifest::{self, Manifest, CURRENT};

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("object store {url}: {message}")]
    Store { url: String, message: String },
    #[error("{0}")]
    Corrupt(String),
    #[error("io error at {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RemoteError + '_ {
    move |source| RemoteError::Io { path: path.display().to_string(), source }
}

/// Whether a configured data root names an object store rather than a folder.
pub fn is_url(root: &Path) -> bool {
    root.to_str().is_some_and(|s| s.contains("://"))
}

/// The data root of `cfg` in an object store, mirrored locally.
pub struct Remote {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    local: PathBuf,
    keep_versions: usize,
    gc_grace_ms: u64,
}

/// What one [`Remote::pull`] of a repo did.
#[derive(Debug, Clone, PartialEq)]
pub enum Pulled {
    /// The local mirror already had the store's current version.
    UpToDate,
    /// A new version is now current locally: its number, files downloaded and their bytes.
    Swapped { version: u64, files: usize, bytes: u64 },
}

impl Remote {
    /// With `data.root` an object-store URL: the store (credentials and endpoint from the
    /// environment, as the `object_store` crate reads them: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...), and `cfg`'s
    /// data root rewritten to the local mirror (`data.mirror`). `None` for a local data root.
    pub fn attach(cfg: &mut Config) -> anyhow::Result<Option<Arc<Self>>> {
        if !is_url(&cfg.data.root) {
            return Ok(None);
        }
        let url = cfg.data.root.to_string_lossy().trim_end_matches('/').to_string();
        let (scheme, rest) = url.split_once("://").expect("is_url");
        let (store, prefix): (Arc<dyn ObjectStore>, StorePath) = match scheme {
            "s3" | "s3a" => {
                // Few, quick retries: a service polls again every reload_ms anyway, and an
                // indexer run that fails is re-run; the default retries for minutes.
                let retry = object_store::RetryConfig {
                    max_retries: 2,
                    retry_timeout: std::time::Duration::from_secs(15),
                    ..Default::default()
                };
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(&url)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| anyhow::anyhow!("data.root {url}: {e}"))?;
                (Arc::new(s3), StorePath::from(rest.split_once('/').map_or("", |(_, p)| p)))
            }
            "file" => {
                let dir = PathBuf::from(rest);
                std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("data.root {url}: {e}"))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| anyhow::anyhow!("data.root {url}: {e}"))?;
                (Arc::new(fs), StorePath::from(""))
            }
            other => {
                anyhow::bail!("data.root {url}: unsupported store {other:?}; use s3://bucket/prefix or file:///path")
            }
        };
        let local = if cfg.data.mirror.as_os_str().is_empty() {
            let name: String =
                url.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
            cfg.data.cache.join("mirror").join(name)
        } else {
            cfg.data.mirror.clone()
        };
        manifest::create_private_dir_all(&local)
            .map_err(|e| anyhow::anyhow!("data.mirror {}: {e}", local.display()))?;
        cfg.data.root = local.clone();
        tracing::info!(%url, mirror = %local.display(), "data root in an object store, mirrored locally");
        Ok(Some(Arc::new(Self {
            url,
            store,
            prefix,
            local,
            keep_versions: cfg.index.keep_versions,
            gc_grace_ms: cfg.index.gc_grace_ms,
        })))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn key(&self, rel: &str) -> StorePath {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.child(part);
        }
        p
    }

    fn err(&self, e: impl std::fmt::Display) -> RemoteError {
        RemoteError::Store { url: self.url.clone(), message: e.to_string() }
    }

    async fn get_text(&self, rel: &str) -> Result<Option<String>, RemoteError> {
        match self.store.get(&self.key(rel)).await {
            Ok(r) => {
                let b = r.bytes().await.map_err(|e| self.err(e))?;
                Ok(Some(String::from_utf8_lossy(&b).into_owned()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Repos with a `CURRENT` in the store, sorted.
    pub async fn repos(&self) -> Result<Vec<String>, RemoteError> {
        let listed = self.store.list_with_delimiter(Some(&self.prefix)).await.map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for dir in listed.common_prefixes {
            let Some(name) = dir.filename().map(str::to_string) else { continue };
            if manifest::validate_repo_name(&name).is_ok() && self.store.head(&dir.child(CURRENT)).await.is_ok() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Pulls every repo in the store that `serves` accepts; one repo's failure does not stop
    /// the others. Returns (repo, result) per repo.
    pub async fn pull(&self, serves: impl Fn(&str) -> bool) -> Vec<(String, Result<Pulled, RemoteError>)> {
        let repos = match self.repos().await {
            Ok(r) => r,
            Err(e) => return vec![(String::new(), Err(e))],
        };
        let mut out = Vec::new();
        for repo in repos.into_iter().filter(|r| serves(r)) {
            let r = self.pull_repo(&repo).await;
            out.push((repo, r));
        }
        out
    }

    /// Makes the store's current version of `repo` the local current one, downloading the
    /// files the mirror lacks. A failure leaves the local current version as it was.
    pub async fn pull_repo(&self, repo: &str) -> Result<Pulled, RemoteError> {
        manifest::validate_repo_name(repo)?;
        let Some(name) = self.get_text(&format!("{repo}/{CURRENT}")).await? else {
            return Err(RemoteError::Manifest(manifest::ManifestError::NotIndexed(repo.into())));
        };
        let name = name.trim().to_string();
        if manifest::current_version_name(&self.local, repo).as_deref() == Some(name.as_str()) {
            return Ok(Pulled::UpToDate);
        }
        let mrel = format!("manifests/{name}.json");
        let text = self
            .get_text(&format!("{repo}/{mrel}"))
            .await?
            .ok_or_else(|| RemoteError::Corrupt(format!("{repo}/CURRENT names {name} but {repo}/{mrel} is missing")))?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| RemoteError::Corrupt(format!("{}/{repo}/{mrel}: {e}", self.url)))?;
        if m.checksums.is_empty() {
            return Err(RemoteError::Corrupt(format!(
                "{}/{repo}/{mrel} lists no checksums: publish it with `codeintel index` into the store",
                self.url
            )));
        }
        let dir = self.local.join(repo);
        let (mut files, mut bytes) = (0usize, 0u64);
        for (rel, sum) in &m.checksums {
            let path = dir.join(rel);
            if path.is_file() {
                continue; // downloaded (and checked) or written here before: files never change
            }
            bytes += self.download(&format!("{repo}/{rel}"), &path, sum).await?;
            files += 1;
        }
        let mdir = dir.join("manifests");
        manifest::create_private_dir_all(&mdir).map_err(io(&mdir))?;
        manifest::write_atomic(&mdir.join(format!("{name}.json")), text.as_bytes())?;
        manifest::write_atomic(&dir.join(CURRENT), format!("{name}\n").as_bytes())?;
        tracing::info!(repo, version = m.version, files, bytes, "pulled a new version from the object store");
        if let Err(e) = manifest::collect_garbage(&self.local, repo, self.keep_versions, self.gc_grace_ms) {
            tracing::warn!(repo, error = %e, "could not delete old versions from the mirror");
        }
        Ok(Pulled::Swapped { version: m.version, files, bytes })
    }

    /// Streams one object to `path` through `<path>.<pid>.part`, checking its sha256; returns
    /// bytes.
    async fn download(&self, key: &str, path: &Path, want: &str) -> Result<u64, RemoteError> {
        if let Some(parent) = path.parent() {
            manifest::create_private_dir_all(parent).map_err(io(parent))?;
        }
        // Per process: services on one host may share a mirror (the default `data.mirror`), and
        // each must rename only what it has checked itself.
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let part = path.with_file_name(format!("{name}.{}.part", std::process::id()));
        let mut f = tokio::fs::File::from_std(manifest::create_private_file(&part).map_err(io(&part))?);
        let mut stream =
            self.store.get(&self.key(key)).await.map_err(|e| self.err(format!("{key}: {e}")))?.into_stream();
        let (mut hash, mut n) = (Sha256::new(), 0u64);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.err(format!("{key}: download interrupted after {n} bytes: {e}")))?;
            hash.update(&chunk);
            n += chunk.len() as u64;
            f.write_all(&chunk).await.map_err(io(&part))?;
        }
        f.sync_all().await.map_err(io(&part))?;
        drop(f);
        let got = hex::encode(hash.finalize());
        if got != want {
            let _ = std::fs::remove_file(&part);
            return Err(RemoteError::Corrupt(format!(
                "{}/{key}: sha256 {got} but the manifest says {want}; not used",
                self.url
            )));
        }
        std::fs::rename(&part, path).map_err(io(path))?;
        Ok(n)
    }

    /// Uploads the local current version of `repo`: the files the store lacks, then the
    /// manifest with every file's checksum, then `CURRENT`. Returns the version pushed.
    pub async fn push(&self, repo: &str) -> Result<u64, RemoteError> {
        let m = manifest::load_current(&self.local, repo)?;
        let dir = self.local.join(repo);
        let mut existing = std::collections::HashSet::new();
        let mut listing = self.store.list(Some(&self.key(repo)));
        while let Some(meta) = listing.next().await {
            existing.insert(meta.map_err(|e| self.err(e))?.location.to_string());
        }
        // Checksums of files the previous version in the store already has are carried over.
        let prev = self.previous_checksums(repo).await;
        let mut checksums = BTreeMap::new();
        for rel in manifest::version_files(&dir, &m)? {
            let path = dir.join(&rel);
            let key = self.key(&format!("{repo}/{rel}"));
            let present = existing.contains(key.as_ref());
            // The local manifest's sum was taken at publish; the store's previous one at upload.
            let sum = match (m.checksums.get(&rel), prev.get(&rel)) {
                (Some(s), _) => s.clone(),
                (None, Some(s)) if present => s.clone(),
                _ => manifest::sha256_file(&path)?,
            };
            if !present {
                self.upload(&path, &key).await?;
            }
            checksums.insert(rel, sum);
        }
        let name = manifest::version_name(m.version);
        let remote_m = Manifest { checksums, ..m };
        let json = serde_json::to_vec_pretty(&remote_m).expect("manifest serializes");
        let mkey = self.key(&format!("{repo}/manifests/{name}.json"));
        self.store.put(&mkey, PutPayload::from(json)).await.map_err(|e| self.err(e))?;
        let ckey = self.key(&format!("{repo}/{CURRENT}"));
        self.store.put(&ckey, PutPayload::from(format!("{name}\n"))).await.map_err(|e| self.err(e))?;
        tracing::info!(repo, version = remote_m.version, url = %self.url, "published to the object store");
        Ok(remote_m.version)
    }

    async fn previous_checksums(&self, repo: &str) -> BTreeMap<String, String> {
        let Ok(Some(name)) = self.get_text(&format!("{repo}/{CURRENT}")).await else { return BTreeMap::new() };
        let Ok(Some(text)) = self.get_text(&format!("{repo}/manifests/{}.json", name.trim())).await else {
            return BTreeMap::new();
        };
        serde_json::from_str::<Manifest>(&text).map(|m| m.checksums).unwrap_or_default()
    }

    async fn upload(&self, path: &Path, key: &StorePath) -> Result<(), RemoteError> {
        let mut f = tokio::fs::File::open(path).await.map_err(io(path))?;
        let mut w = object_store::buffered::BufWriter::new(self.store.clone(), key.clone());
        tokio::io::copy(&mut f, &mut w).await.map_err(|e| self.err(format!("{key}: {e}")))?;
        w.shutdown().await.map_err(|e| self.err(format!("{key}: {e}")))?;
        Ok(())
    }
}

/// For a service: attaches `cfg` to its object store (see [`Remote::attach`]), pulls the repos
/// that `serves` (globs; empty = all) names once now, then every `period` in the background.
/// A local data root is left as it is.
pub async fn follow(cfg: &mut Config, serves: &[String], period: std::time::Duration) -> anyhow::Result<()> {
    let Some(remote) = Remote::attach(cfg)? else { return Ok(()) };
    let globs = codeintel_core::scope::glob_set(serves)?;
    let serves = move |r: &str| globs.as_ref().is_none_or(|g| g.is_match(r));
    let report = |results: Vec<(String, Result<Pulled, RemoteError>)>| {
        for (repo, r) in results {
            if let Err(e) = r {
                tracing::warn!(repo, error = %e, "object store pull failed; the previous version keeps serving");
            }
        }
    };
    report(remote.pull(&serves).await);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            report(remote.pull(&serves).await);
        }
    });
    Ok(())
}
