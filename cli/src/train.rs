//! Training examples for the retrieval models of issue 19, cut by our own chunker: each mined
//! query (a definition's first doc sentence, `scripts/train/mine.sh`) becomes its positive chunk,
//! as the reranker sees it when it serves ([`Chunk::rerank_text`] of the stripped copy, the
//! package version left out of the path), and hard negatives: siblings from the same file
//! first (the near-identical methods of one type are what the retrievers confuse), then
//! chunks of the same package with a similar name, then others of the same package. Queries
//! whose text names several different definitions are dropped (they cannot be learned), and so
//! are repeated (query, positive) pairs, which packages that ship the same code twice (ESM and
//! CommonJS builds) produce.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Context;
use codeintel_core::chunk::{language_for_path, sha256_hex, words_of, Chunk, ChunkOptions};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One mined query: `scripts/train/mine.py`'s lines (the benchmark's shape plus `package`).
#[derive(Debug, Clone, Deserialize)]
pub struct MinedQuery {
    pub id: String,
    pub query: String,
    pub lang: String,
    pub package: String,
    pub gold: Vec<Gold>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Gold {
    pub path: String,
    pub def_line: u32,
}

/// One training example: a query, the text of the chunk it describes, and texts that it does not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Example {
    pub id: String,
    pub query: String,
    pub lang: String,
    pub package: String,
    pub pos: String,
    pub negs: Vec<String>,
    /// Where each negative came from: `sibling` (same file), `name` (same package, similar
    /// name) or `package` (same package).
    pub neg_kinds: Vec<String>,
    /// The same chunks as the embedder reads them when it indexes ([`Chunk::embedding_text`]
    /// and, for a named chunk, [`Chunk::name_text`]): what the embedder is fine-tuned on.
    #[serde(default)]
    pub pos_embed: String,
    #[serde(default)]
    pub pos_name: Option<String>,
    #[serde(default)]
    pub negs_embed: Vec<String>,
    #[serde(default)]
    pub negs_name: Vec<Option<String>>,
}

/// What [`examples`] kept and dropped.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PairStats {
    pub queries: usize,
    pub examples: usize,
    pub no_chunk: usize,
    pub ambiguous: usize,
    pub duplicate: usize,
}

/// The chunk a gold definition is: the smallest named chunk of its file holding `def_line`
/// (a line window only when no definition does).
fn positive(chunks: &[Chunk], def_line: u32) -> Option<&Chunk> {
    chunks
        .iter()
        .filter(|c| c.start_line <= def_line && def_line <= c.end_line)
        .min_by_key(|c| (c.symbol.is_empty(), c.end_line - c.start_line))
}

/// `bytes-1.12.2/src/buf.rs` -> `bytes/src/buf.rs`: the path as the package's own repository
/// shows it, which is what the reranker sees when it serves.
fn unversioned(path: &str) -> String {
    let (first, rest) = path.split_once('/').unwrap_or((path, ""));
    let name = first
        .char_indices()
        .find(|&(i, c)| c == '-' && first[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
        .map_or(first, |(i, _)| &first[..i]);
    format!("{name}/{rest}")
}

fn overlaps(a: &Chunk, b: &Chunk) -> bool {
    a.path == b.path && a.start_line <= b.end_line && b.start_line <= a.end_line
}

fn name_words(c: &Chunk) -> HashSet<String> {
    // The last part of the qualified name: `Buf::get_f64_le` -> get, f64, le.
    let last = c.symbol.rsplit([':', '.']).next().unwrap_or("");
    words_of(last).split_whitespace().map(str::to_lowercase).collect()
}

fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    let inter = a.intersection(b).count();
    if inter == 0 {
        return 0.0;
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// A stable pseudo-random order: the same seed, query and chunk give the same place.
fn draw(seed: u64, query: &str, chunk: u64) -> String {
    sha256_hex(format!("{seed}/{query}/{chunk}").as_bytes())
}

/// Which definition a positive is: its package and qualified name (a package that ships the same
/// code in several builds, `dist/` and `src/`, ESM and CommonJS, has one definition in several
/// files, often transpiled into different text); a nameless window is its text.
fn definition(q: &MinedQuery, c: &Chunk) -> String {
    if c.symbol.is_empty() {
        sha256_hex(c.text.as_bytes())
    } else {
        format!("{}\u{0}{}\u{0}{}", q.package, c.kind, c.symbol)
    }
}

fn normalise(q: &str) -> String {
    q.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Chunks every gold file of `queries` under `corpus` and builds one [`Example`] per usable
/// query with up to `negatives` negatives drawn from those files (a package's pool is the files
/// that hold at least one mined query) (half siblings, a quarter similar names, the rest
/// from the package, each group topped up from the next when short).
pub fn examples(
    corpus: &Path,
    queries: &[MinedQuery],
    negatives: usize,
    seed: u64,
) -> anyhow::Result<(Vec<Example>, PairStats)> {
    let opts = ChunkOptions::default();
    let mut paths: Vec<(&str, &str)> =
        queries.iter().flat_map(|q| q.gold.iter().map(|g| (q.package.as_str(), g.path.as_str()))).collect();
    paths.sort();
    paths.dedup();
    let chunked: Vec<(&str, String, Vec<Chunk>)> = paths
        .par_iter()
        .map(|&(pkg, path)| {
            let text = std::fs::read_to_string(corpus.join(path))
                .with_context(|| format!("cannot read {} under {}", path, corpus.display()))?;
            let lang = language_for_path(path).unwrap_or("text");
            Ok((pkg, path.to_string(), codeintel_chunk::chunk_file("train", &unversioned(path), lang, &text, opts)))
        })
        .collect::<anyhow::Result<_>>()?;
    let by_path: HashMap<&str, &[Chunk]> = chunked.iter().map(|(_, p, c)| (p.as_str(), c.as_slice())).collect();
    let mut by_package: HashMap<&str, Vec<&Chunk>> = HashMap::new();
    for (pkg, _, cs) in &chunked {
        by_package.entry(pkg).or_default().extend(cs.iter().filter(|c| !c.symbol.is_empty()));
    }

    let mut stats = PairStats { queries: queries.len(), ..Default::default() };
    // The positive of each query first, so that queries naming several definitions are known.
    let mut found: Vec<(&MinedQuery, &Chunk)> = Vec::new();
    let mut targets: HashMap<String, HashSet<String>> = HashMap::new();
    for q in queries {
        let Some(g) = q.gold.first() else {
            stats.no_chunk += 1;
            continue;
        };
        match by_path.get(g.path.as_str()).and_then(|cs| positive(cs, g.def_line)) {
            Some(c) => {
                targets.entry(normalise(&q.query)).or_default().insert(definition(q, c));
                found.push((q, c));
            }
            None => stats.no_chunk += 1,
        }
    }
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut out = Vec::new();
    for (q, pos) in found {
        let key = normalise(&q.query);
        if targets[&key].len() > 1 {
            stats.ambiguous += 1;
            continue;
        }
        if !seen.insert((key, definition(q, pos))) {
            stats.duplicate += 1;
            continue;
        }
        // A question may name several definitions (`scripts/train/questions.py`): the first is the
        // positive, and none of the others may be drawn as a negative.
        let also: Vec<&Chunk> = q.gold[1..]
            .iter()
            .filter_map(|g| by_path.get(g.path.as_str()).and_then(|cs| positive(cs, g.def_line)))
            .collect();
        let same = |c: &Chunk| {
            overlaps(c, pos)
                || c.text == pos.text
                || (c.symbol == pos.symbol && c.kind == pos.kind)
                || also.iter().any(|o| overlaps(c, o) || c.text == o.text)
        };
        let words = name_words(pos);
        let order = |c: &Chunk| draw(seed, &q.id, c.chunk_id);
        let siblings: Vec<&Chunk> = {
            let mut v: Vec<&Chunk> =
                by_path[q.gold[0].path.as_str()].iter().filter(|c| !c.symbol.is_empty() && !same(c)).collect();
            // Most alike names first, then a stable random order.
            v.sort_by_cached_key(|c| (std::cmp::Reverse((jaccard(&words, &name_words(c)) * 1e6) as u64), order(c)));
            v
        };
        let package = &by_package[q.package.as_str()];
        let mut named: Vec<&Chunk> = package
            .iter()
            .copied()
            .filter(|c| c.path != pos.path && !same(c) && jaccard(&words, &name_words(c)) > 0.0)
            .collect();
        named.sort_by_cached_key(|c| (std::cmp::Reverse((jaccard(&words, &name_words(c)) * 1e6) as u64), order(c)));
        let mut others: Vec<&Chunk> = package.iter().copied().filter(|c| c.path != pos.path && !same(c)).collect();
        others.sort_by_cached_key(|c| order(c));

        let mut picked: Vec<(&Chunk, &str)> = Vec::new();
        let mut taken: HashSet<u64> = HashSet::new();
        let quotas =
            [(siblings, "sibling", negatives / 2), (named, "name", negatives / 4), (others, "package", negatives)];
        let mut carry = 0;
        for (pool, kind, quota) in quotas {
            let want = (quota + carry).min(negatives - picked.len());
            let before = picked.len();
            for c in pool {
                if picked.len() - before == want {
                    break;
                }
                if taken.insert(c.chunk_id) && !picked.iter().any(|(p, _)| p.text == c.text) {
                    picked.push((c, kind));
                }
            }
            carry = want - (picked.len() - before);
        }
        if picked.is_empty() {
            stats.no_chunk += 1;
            continue;
        }
        out.push(Example {
            id: q.id.clone(),
            query: q.query.clone(),
            lang: q.lang.clone(),
            package: q.package.clone(),
            pos: pos.rerank_text(),
            pos_embed: pos.embedding_text(),
            pos_name: pos.name_text(),
            neg_kinds: picked.iter().map(|(_, k)| k.to_string()).collect(),
            negs_embed: picked.iter().map(|(c, _)| c.embedding_text()).collect(),
            negs_name: picked.iter().map(|(c, _)| c.name_text()).collect(),
            negs: picked.into_iter().map(|(c, _)| c.rerank_text()).collect(),
        });
    }
    stats.examples = out.len();
    Ok((out, stats))
}

/// Reads `scripts/train/mine.py`'s queries file.
pub fn read_queries(path: &Path) -> anyhow::Result<Vec<MinedQuery>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str(l).with_context(|| format!("{} line {}: not a mined query", path.display(), n + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUF: &str = "impl Buf {\n    pub fn get_f64_le(&mut self) -> f64 {\n        f64::from_bits(self.get_u64_le())\n    }\n\n    pub fn get_f32_le(&mut self) -> f32 {\n        f32::from_bits(self.get_u32_le())\n    }\n\n    pub fn advance(&mut self, n: usize) {\n        self.pos += n;\n    }\n}\n";
    const OTHER: &str = "pub fn read_f64_le(b: &[u8]) -> f64 {\n    f64::from_le_bytes(b.try_into().unwrap())\n}\n\npub fn checksum(b: &[u8]) -> u32 {\n    b.iter().map(|&x| x as u32).sum()\n}\n";

    fn corpus() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("bytes-1/src")).unwrap();
        std::fs::write(d.path().join("bytes-1/src/buf.rs"), BUF).unwrap();
        std::fs::write(d.path().join("bytes-1/src/util.rs"), OTHER).unwrap();
        // The same file again under another path (a second build of the package).
        std::fs::write(d.path().join("bytes-1/src/copy.rs"), BUF).unwrap();
        // And one definition of it built into other text (a transpiled `dist/` copy).
        std::fs::create_dir_all(d.path().join("bytes-1/dist")).unwrap();
        std::fs::write(
            d.path().join("bytes-1/dist/buf.rs"),
            "impl Buf {\n    pub fn advance(&mut self, n: usize) {\n        self.pos = self.pos + n;\n    }\n}\n",
        )
        .unwrap();
        d
    }

    fn q(id: &str, query: &str, path: &str, def_line: u32) -> MinedQuery {
        MinedQuery {
            id: id.into(),
            query: query.into(),
            lang: "rust".into(),
            package: "bytes-1".into(),
            gold: vec![Gold { path: path.into(), def_line }],
        }
    }

    #[test]
    fn siblings_come_first_and_the_positive_is_the_gold_definition() {
        let d = corpus();
        // The package's pool is the files that hold a mined query, so util.rs and copy.rs hold one.
        let qs = [
            q("a", "Gets a double from self in little-endian order", "bytes-1/src/buf.rs", 2),
            q("b", "Sums the bytes", "bytes-1/src/util.rs", 5),
            q("c", "Moves the cursor forward", "bytes-1/src/copy.rs", 10),
        ];
        let (ex, stats) = examples(d.path(), &qs, 4, 7).unwrap();
        assert_eq!(stats.examples, 3);
        let e = &ex[0];
        assert!(e.pos.contains("fn get_f64_le") && !e.pos.contains("get_f32_le"), "{}", e.pos);
        // What the reranker reads when it serves: the path without the package version first.
        assert!(e.pos.starts_with("bytes/src/buf.rs\n"), "{}", e.pos);
        // Same-file siblings first, the closest name (get_f32_le) before advance.
        assert_eq!(e.neg_kinds[0], "sibling");
        assert!(e.negs[0].contains("fn get_f32_le"), "{}", e.negs[0]);
        // The copy of the positive in copy.rs is never a negative.
        assert!(e.negs.iter().all(|n| !n.contains("fn get_f64_le")), "{:?}", e.negs);
        // The embedder's views are of the same chunks, with its header.
        assert!(e.pos_embed.starts_with("rust ") && e.pos_embed.contains("fn get_f64_le"), "{}", e.pos_embed);
        assert!(e.pos_name.as_deref().is_some_and(|n| n.contains("get_f64_le") && !n.contains("from_bits")));
        assert_eq!(e.negs_embed.len(), e.negs.len());
        assert_eq!(e.negs_name.len(), e.negs.len());
        assert!(e.negs_embed[0].contains("fn get_f32_le"), "{}", e.negs_embed[0]);
        // A similar name from another file of the package.
        let named = e
            .neg_kinds
            .iter()
            .position(|k| k == "name")
            .unwrap_or_else(|| panic!("no name negative: {:?} {:#?}", e.neg_kinds, e.negs));
        assert!(e.negs[named].contains("read_f64_le"), "{}", e.negs[named]);
    }

    #[test]
    fn ambiguous_and_repeated_queries_are_dropped() {
        let d = corpus();
        let qs = [
            q("a", "Gets a double", "bytes-1/src/buf.rs", 2),
            q("b", "gets  a DOUBLE", "bytes-1/src/util.rs", 1),
            q("c", "Moves the cursor forward by n bytes", "bytes-1/src/buf.rs", 10),
            q("d", "Moves the cursor forward by n bytes", "bytes-1/src/copy.rs", 10),
            // The same definition in another build, with other text: repeated, not ambiguous.
            q("f", "Moves the cursor forward by n bytes", "bytes-1/dist/buf.rs", 2),
            q("e", "Nothing is defined on this line at all", "bytes-1/src/util.rs", 99),
        ];
        let (ex, stats) = examples(d.path(), &qs, 4, 7).unwrap();
        assert_eq!(ex.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["c"]);
        assert_eq!((stats.ambiguous, stats.duplicate, stats.no_chunk), (2, 2, 1));
    }

    #[test]
    fn a_question_with_several_definitions_never_has_the_others_as_negatives() {
        let d = corpus();
        let mut both = q("a", "how do I read a float back out of the buffer?", "bytes-1/src/buf.rs", 2);
        both.gold.push(Gold { path: "bytes-1/src/buf.rs".into(), def_line: 6 });
        let (ex, _) =
            examples(d.path(), &[both.clone(), q("b", "Sums the bytes", "bytes-1/src/util.rs", 5)], 4, 7).unwrap();
        let e = ex.iter().find(|e| e.id == "a").unwrap();
        assert!(e.pos.contains("fn get_f64_le"), "{}", e.pos);
        assert!(e.negs.iter().all(|n| !n.contains("fn get_f32_le")), "{:?}", e.negs);
        assert!(e.negs.iter().any(|n| n.contains("fn advance")), "{:?}", e.negs);
        // With one definition named, the closest sibling is the first negative.
        both.gold.pop();
        let (ex, _) = examples(d.path(), &[both], 4, 7).unwrap();
        assert!(ex[0].negs[0].contains("fn get_f32_le"), "{:?}", ex[0].negs);
    }

    #[test]
    fn the_same_seed_gives_the_same_examples() {
        let d = corpus();
        let qs = [q("a", "Gets a double from self in little-endian order", "bytes-1/src/buf.rs", 2)];
        assert_eq!(examples(d.path(), &qs, 3, 1).unwrap().0, examples(d.path(), &qs, 3, 1).unwrap().0);
    }
}
