//! The on-disk form of a set of sparse (SPLADE) documents ([`write_docs`] / [`read_docs`]): per
//! document its chunk id, path, language and terms, little-endian, with a magic header.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

pub use codeintel_core::SparseVec;

/// One stored sparse document.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseDoc {
    pub chunk_id: u64,
    pub path: String,
    pub language: String,
    pub terms: SparseVec,
}

const MAGIC: &[u8; 8] = b"CISPRS01";

fn put_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u32).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

/// Writes documents to `path` (through a temporary file, fsynced, then renamed).
pub fn write_docs(path: &Path, docs: &[SparseDoc]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        crate::manifest::create_private_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let f = crate::manifest::create_private_file(&tmp)?;
        let mut w = BufWriter::new(&f);
        w.write_all(MAGIC)?;
        w.write_all(&(docs.len() as u64).to_le_bytes())?;
        for d in docs {
            w.write_all(&d.chunk_id.to_le_bytes())?;
            put_str(&mut w, &d.path)?;
            put_str(&mut w, &d.language)?;
            w.write_all(&(d.terms.len() as u32).to_le_bytes())?;
            for (t, x) in &d.terms {
                w.write_all(&t.to_le_bytes())?;
                w.write_all(&x.to_le_bytes())?;
            }
        }
        w.flush()?;
        drop(w);
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn get<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn get_str(r: &mut impl Read) -> std::io::Result<String> {
    let n = u32::from_le_bytes(get(r)?) as usize;
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)?;
    String::from_utf8(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Reads what [`write_docs`] wrote.
pub fn read_docs(path: &Path) -> std::io::Result<Vec<SparseDoc>> {
    let mut r = BufReader::new(std::fs::File::open(path)?);
    if &get::<8>(&mut r)? != MAGIC {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not a sparse document file", path.display()),
        ));
    }
    let n = u64::from_le_bytes(get(&mut r)?) as usize;
    let mut docs = Vec::with_capacity(n.min(1 << 24));
    for _ in 0..n {
        let chunk_id = u64::from_le_bytes(get(&mut r)?);
        let path = get_str(&mut r)?;
        let language = get_str(&mut r)?;
        let nnz = u32::from_le_bytes(get(&mut r)?) as usize;
        let mut terms = Vec::with_capacity(nnz);
        for _ in 0..nnz {
            let t = u32::from_le_bytes(get(&mut r)?);
            let x = f32::from_le_bytes(get(&mut r)?);
            terms.push((t, x));
        }
        docs.push(SparseDoc { chunk_id, path, language, terms });
    }
    Ok(docs)
}

/// The live documents of a set of files (oldest first): a later file's copy of a chunk replaces
/// an earlier one, and `dead` chunk ids are dropped. Sorted by chunk id.
pub fn live_docs(
    dir: &Path,
    files: &[String],
    dead: &std::collections::HashSet<u64>,
) -> std::io::Result<Vec<SparseDoc>> {
    let mut by_id: std::collections::BTreeMap<u64, SparseDoc> = std::collections::BTreeMap::new();
    for f in files {
        let p = dir.join(f);
        let docs = read_docs(&p).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
        for d in docs {
            by_id.insert(d.chunk_id, d);
        }
    }
    by_id.retain(|id, _| !dead.contains(id));
    Ok(by_id.into_values().collect())
}
