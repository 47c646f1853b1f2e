//! A question's subject: the component it names ("how does **the answer service** fuse ...",
//! "what does **the query engine** do with ...") told apart from what it asks. A folder of the
//! repo links to the question when its name has two words or more (`answer-svc` -> answer,
//! service; `query_engine`) and they make the grammatical subject of the question: the noun
//! phrase right after its auxiliary verb (does, do, can, will, make...), opened by an article
//! or determiner. The same words as an object ("which function calls **the answer service**")
//! name what is worked on, not where to look, and do not link; nor do one-word folder names
//! (`client`, `http`, `buffer`), which are ordinary nouns a qualifier changes ("the S3 client"
//! is not `src/client/`). The subject then scopes a second search, and its words leave that
//! search's query: "the answer service" otherwise pulls an embedder toward everything that
//! merely belongs to the service (its config, its clients) rather than the code that does what
//! is asked.

use std::cmp::Reverse;
use std::collections::HashMap;

/// A question linked to a folder of one repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub repo: String,
    /// Repo-relative, `/`-separated, no trailing slash.
    pub folder: String,
    /// The question with the subject's phrase replaced by `it` (`its`): what is asked of it.
    pub query: String,
}

impl Subject {
    /// The include glob of the folder's files.
    pub fn glob(&self) -> String {
        format!("{}/**", self.folder)
    }
}

/// Words that may stand right before a subject ("the answer service", "this client", "its
/// parser").
const DETERMINERS: &[&str] = &["the", "a", "an", "this", "that", "its", "my", "our", "your", "their", "each", "every"];

/// The verbs after which a question's subject stands ("how **does** the client ...", "what
/// **can** the parser ...", "which failures **make** the client retry?").
const AUXILIARIES: &[&str] = &[
    "does", "do", "did", "doesn't", "don't", "didn't", "can", "could", "will", "would", "should", "might", "must",
    "may", "make", "makes", "let", "lets",
];

/// Nouns that name a component after its name ("the Azure **store**", "the aws **backend**"):
/// they belong to the subject's phrase.
const COMPONENT_NOUNS: &[&str] = &[
    "store",
    "client",
    "service",
    "server",
    "backend",
    "module",
    "crate",
    "package",
    "library",
    "layer",
    "provider",
    "builder",
    "implementation",
    "api",
    "handler",
    "driver",
    "adapter",
    "plugin",
    "wrapper",
    "component",
    "engine",
];

/// Abbreviations folder names use, as the words a question uses.
fn expand(word: &str) -> &str {
    match word {
        "svc" | "srv" => "service",
        "cfg" | "conf" => "config",
        "fmt" => "format",
        "mgr" => "manager",
        "msg" | "msgs" => "message",
        "db" => "database",
        "fs" => "filesystem",
        "auth" | "authn" => "authentication",
        "impl" => "implementation",
        "proto" | "protos" => "protocol",
        w => w,
    }
}

/// One word as compared: lower case, a plural's `s` (and a possessive's `'s`) off.
fn stem(word: &str) -> String {
    let w = word.to_ascii_lowercase();
    let w = w.strip_suffix("'s").unwrap_or(&w);
    let w = expand(w);
    match w.strip_suffix('s') {
        Some(s) if s.len() >= 3 && !s.ends_with('s') => s.to_string(),
        _ => w.to_string(),
    }
}

/// The words of a folder's last name as a question would say them (`answer-svc` -> answer,
/// service); empty for one-word names (which include every layout folder: `src`, `lib`,
/// `internal`, `services`...) and names with a word of fewer than three letters or digits.
pub fn folder_words(name: &str) -> Vec<String> {
    let parts: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_')
        .flat_map(|p| crate::query::split_identifier(p, false))
        .collect();
    if parts.len() < 2 || parts.iter().any(|p| p.len() < 3 || p.chars().all(|c| c.is_ascii_digit())) {
        return Vec::new();
    }
    parts.iter().map(|p| stem(p)).collect()
}

/// Every folder above each path, with how many of the paths it holds.
fn folders<'a>(paths: impl IntoIterator<Item = (&'a str, &'a str)>) -> HashMap<(&'a str, &'a str), usize> {
    let mut out = HashMap::new();
    for (repo, path) in paths {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            *out.entry((repo, &path[..end])).or_insert(0) += 1;
            end += 1;
        }
    }
    out
}

/// Links `question` to the folder among those above `paths` (repo, repo-relative path: the
/// first hits of a search) whose name's words ([`folder_words`]) stand in the question as one
/// phrase right after a determiner that itself follows an auxiliary ([`AUXILIARIES`]: the
/// question's subject); a component noun right after the name ("the query engine
/// **module**") belongs to the phrase. The longest such
/// name wins, then the folder that holds more of the paths, then the shallower one. `None`
/// when no folder links, or when the subject is nearly all the question says.
pub fn link<'a>(question: &str, paths: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Subject> {
    let tokens: Vec<&str> = question.split_whitespace().collect();
    let lower: Vec<String> = tokens
        .iter()
        .map(|t| t.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '\'').to_ascii_lowercase())
        .collect();
    let words: Vec<String> = lower.iter().map(|w| stem(w)).collect();
    let det = |i: usize| DETERMINERS.contains(&lower[i].as_str());
    // The best link so far: its rank (name length, paths held, shallower, then the folder's
    // name for a stable choice), where it is, and the span of its phrase.
    type Rank<'f> = (usize, usize, Reverse<usize>, Reverse<&'f str>);
    let mut best: Option<(Rank, &str, &str, usize, usize)> = None;
    for ((repo, folder), held) in folders(paths) {
        let name = folder.rsplit('/').next().unwrap_or(folder);
        let fw = folder_words(name);
        if fw.is_empty() || fw.len() > words.len() {
            continue;
        }
        for start in 0..=words.len() - fw.len() {
            if words[start..start + fw.len()] != fw[..] {
                continue;
            }
            // "does the answer service ...": an auxiliary, a determiner, the name.
            if start < 2 || !det(start - 1) || !AUXILIARIES.contains(&lower[start - 2].as_str()) {
                continue;
            }
            let opens = start - 1;
            let mut end = start + fw.len();
            if end < words.len() && COMPONENT_NOUNS.contains(&words[end].as_str()) {
                end += 1;
            }
            let rank = (fw.len(), held, Reverse(folder.matches('/').count()), Reverse(folder));
            if best.as_ref().is_none_or(|b| rank > b.0) {
                best = Some((rank, repo, folder, opens, end));
            }
            break;
        }
    }
    let (_, repo, folder, opens, end) = best?;
    Some(Subject { repo: repo.to_string(), folder: folder.to_string(), query: rewrite(&tokens, opens, end)? })
}

/// The question with the subject's phrase `tokens[opens..end]` (from its determiner) replaced
/// by `it` (`its` for a possessive), keeping the punctuation its last word carried. `None`
/// when fewer than three words would be left.
fn rewrite(tokens: &[&str], opens: usize, end: usize) -> Option<String> {
    let last = tokens[end - 1];
    let word = last.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '\'');
    let trailing = &last[word.len()..];
    let stand_in = if word.to_ascii_lowercase().ends_with("'s") { "its" } else { "it" };
    let mut out: Vec<String> = tokens[..opens].iter().map(|t| t.to_string()).collect();
    out.push(format!("{stand_in}{trailing}"));
    out.extend(tokens[end..].iter().map(|t| t.to_string()));
    (out.len() >= 3).then(|| out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Vec<(&'static str, &'static str)> {
        vec![
            ("codeintel", "services/answer-svc/src/fusion.rs"),
            ("codeintel", "services/answer-svc/src/pipeline/stages.rs"),
            ("codeintel", "services/lexical-svc/src/bm25.rs"),
            ("codeintel", "shared/codeintel-config/src/lib.rs"),
            ("codeintel", "README.md"),
        ]
    }

    #[test]
    fn a_named_service_becomes_the_scope_and_leaves_the_query() {
        let s = link("how does the answer service fuse dense and lexical results?", paths()).unwrap();
        assert_eq!((s.repo.as_str(), s.folder.as_str()), ("codeintel", "services/answer-svc"));
        assert_eq!(s.query, "how does it fuse dense and lexical results?");
        assert_eq!(s.glob(), "services/answer-svc/**");
        // A possessive keeps its sense, and plural and abbreviation both match.
        let s = link("how does the lexical service's tokenizer split names?", paths()).unwrap();
        assert_eq!(
            (s.folder.as_str(), s.query.as_str()),
            ("services/lexical-svc", "how does its tokenizer split names?")
        );
        let s = link("What does the codeintel config do with unknown keys?", paths()).unwrap();
        assert_eq!(
            (s.folder.as_str(), s.query.as_str()),
            ("shared/codeintel-config", "What does it do with unknown keys?")
        );
    }

    #[test]
    fn a_component_noun_after_the_name_belongs_to_the_subject() {
        let p = vec![("r", "crates/query-engine/src/plan.rs"), ("r", "crates/blob_store/src/put.rs")];
        let s = link("how does the query engine module prune columns?", p.clone()).unwrap();
        assert_eq!((s.folder.as_str(), s.query.as_str()), ("crates/query-engine", "how does it prune columns?"));
        let s = link("when does the blob store client retry a put?", p).unwrap();
        assert_eq!((s.folder.as_str(), s.query.as_str()), ("crates/blob_store", "when does it retry a put?"));
    }

    #[test]
    fn no_link_unless_the_whole_name_is_the_subject_of_the_question() {
        // Words of the name, but not as one phrase after an auxiliary and a determiner.
        assert_eq!(link("how are answer service errors mapped to status codes?", paths()), None);
        assert_eq!(link("how does the answer get fused with the service?", paths()), None);
        assert_eq!(link("which function calls the answer service with a budget?", paths()), None);
        assert_eq!(link("When the request is in the answer service, what happens?", paths()), None);
        // Layout folders (`src`, `services`, `shared`) and file names never link.
        assert_eq!(link("how do the services start in the shared src tree?", paths()), None);
        assert_eq!(link("how does the fusion work here?", paths()), None);
        // Nothing left to ask once the subject is gone.
        assert_eq!(link("does the answer service?", paths()), None);
    }

    #[test]
    fn one_word_folders_do_not_link() {
        // "the S3 client" lives in src/aws/, not src/client/: a one-word name is an ordinary noun.
        let p = vec![("os", "src/client/retry.rs"), ("os", "src/aws/client.rs"), ("os", "src/http/mod.rs")];
        assert_eq!(link("Does the S3 client send a Content-MD5 header?", p.clone()), None);
        assert_eq!(link("How long does the client wait between retries?", p.clone()), None);
        assert_eq!(link("Which failures make the HTTP client try again?", p), None);
    }

    #[test]
    fn the_longest_name_then_the_folder_holding_more_hits_wins() {
        let p = vec![("r", "answer-svc/a.rs"), ("r", "fast-answer-svc/b.rs"), ("r", "fast-answer-svc/c.rs")];
        assert_eq!(link("how does the fast answer service rank?", p.clone()).unwrap().folder, "fast-answer-svc");
        assert_eq!(link("how does the answer service rank?", p).unwrap().folder, "answer-svc");
        let p = vec![("r", "a/query-engine/x.rs"), ("r", "b/query-engine/x.rs"), ("r", "b/query-engine/y.rs")];
        assert_eq!(link("how does the query engine plan joins?", p).unwrap().folder, "b/query-engine");
    }

    #[test]
    fn folder_names_read_as_words() {
        assert_eq!(folder_words("answer-svc"), vec!["answer", "service"]);
        assert_eq!(folder_words("HttpClient"), vec!["http", "client"]);
        assert_eq!(folder_words("object_stores"), vec!["object", "store"]);
        assert!(folder_words("client").is_empty());
        assert!(folder_words("src").is_empty());
        assert!(folder_words("arrow-v1").is_empty());
    }
}
