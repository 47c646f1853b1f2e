//! Tool results as short text an agent can act on: `repo/path:start-end` first, code with its
//! line numbers, within a character budget that drops whole lines (with a marker saying how
//! many and how to see them) rather than cutting one.

use codeintel_core::proto::v1::{
    CallersResponse, Citation, DefinitionsResponse, FileResponse, Limit, ReferencesResponse, RepoSummary, SearchHit,
};

/// Longest line shown; longer ones (minified code, data) end with `…`.
pub const MAX_LINE_CHARS: usize = 400;
/// Lines of code shown per search hit; the rest is named as a `read_code` range.
pub const HIT_LINES: usize = 40;

/// Text within a budget of characters, whole lines only.
pub struct Out {
    max: usize,
    buf: String,
    elided: usize,
}

impl Out {
    pub fn new(max_chars: usize) -> Self {
        Self { max: max_chars, buf: String::new(), elided: 0 }
    }

    /// Appends a line when it fits (keeping room for the marker); counts it otherwise. Once a
    /// line is dropped every later one is too, so the text never skips a middle part silently.
    pub fn line(&mut self, l: &str) {
        let l = shorten(l);
        // Room for the marker, so that the result stays within max_chars.
        const MARKER_ROOM: usize = 120;
        if self.elided > 0 || self.buf.len() + l.len() + 1 + MARKER_ROOM > self.max {
            self.elided += 1;
            return;
        }
        self.buf.push_str(&l);
        self.buf.push('\n');
    }

    pub fn full(&self) -> bool {
        self.elided > 0
    }

    pub fn finish(mut self) -> String {
        if self.elided > 0 {
            self.buf.push_str(&format!(
                "… {} more line{} not shown (max_chars {}): raise max_chars or narrow the request\n",
                self.elided,
                if self.elided == 1 { "" } else { "s" },
                self.max
            ));
        }
        self.buf
    }
}

fn shorten(l: &str) -> String {
    if l.chars().count() <= MAX_LINE_CHARS {
        return l.to_string();
    }
    let mut s: String = l.chars().take(MAX_LINE_CHARS).collect();
    s.push('…');
    s
}

/// `repo/path:start-end`.
pub fn span(repo: &str, path: &str, start: u32, end: u32) -> String {
    if start == end {
        format!("{repo}/{path}:{start}")
    } else {
        format!("{repo}/{path}:{start}-{end}")
    }
}

/// Code lines numbered from `first`.
fn code(out: &mut Out, text: &str, first: u32, max_lines: usize) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let width = (first as usize + lines.len()).to_string().len();
    for (i, l) in lines.iter().take(max_lines).enumerate() {
        out.line(&format!("{:>width$} | {l}", first as usize + i));
    }
    lines.len().saturating_sub(max_lines)
}

fn limits(out: &mut Out, limits: &[Limit]) {
    for l in limits {
        out.line(&format!("limit {}: {}", l.code, l.message));
    }
}

/// ` @<commit>` (its first 12 digits) when the lines are from a known commit.
fn at_commit(commit: &str) -> String {
    match commit.is_empty() {
        true => String::new(),
        false => format!(" @{}", &commit[..commit.len().min(12)]),
    }
}

/// The warning under a hit or citation whose file changed on disk since it was indexed.
const STALE_LINE: &str =
    "    stale: the file on disk changed since it was indexed; these line numbers may have moved (read_code shows it as indexed; reindex before editing)";

/// `search_code`: each hit's span and name, then its first [`HIT_LINES`] lines.
pub fn hits(hits: &[SearchHit], lims: &[Limit], max_chars: usize) -> String {
    let mut out = Out::new(max_chars);
    if hits.is_empty() {
        out.line("no code matched: try other words, a symbol name, or fewer repos/paths/languages");
    }
    for (i, h) in hits.iter().enumerate() {
        let name = if h.symbol.is_empty() { String::new() } else { format!(" {}", h.symbol) };
        out.line(&format!(
            "[{}] {}{name} ({}) score {:.3}{}",
            i + 1,
            span(&h.repo, &h.path, h.start_line, h.end_line),
            h.language,
            h.score,
            at_commit(&h.commit)
        ));
        if h.stale {
            out.line(STALE_LINE);
        }
        let rest = code(&mut out, &h.text, h.start_line, HIT_LINES);
        if rest > 0 {
            let from = h.start_line + HIT_LINES as u32;
            out.line(&format!("    … {rest} more lines: read_code {} {} {from}-{}", h.repo, h.path, h.end_line));
        }
    }
    limits(&mut out, lims);
    out.finish()
}

/// `ask`: the answer, then its sources, then what could not be done.
pub fn answer(text: &str, citations: &[Citation], lims: &[Limit], max_chars: usize) -> String {
    let mut out = Out::new(max_chars);
    for c in citations {
        let name = if c.symbol.is_empty() { String::new() } else { format!(" {}", c.symbol) };
        out.line(&format!(
            "[{}] {}{name}{}",
            c.index,
            span(&c.repo, &c.path, c.start_line, c.end_line),
            at_commit(&c.commit)
        ));
        if c.stale {
            out.line(STALE_LINE);
        }
    }
    out.line("");
    for l in text.trim().lines() {
        out.line(l);
    }
    limits(&mut out, lims);
    out.finish()
}

fn definition_line(d: &codeintel_core::proto::v1::Definition) -> String {
    format!(
        "{} {} ({}, {}) v{}: {}",
        span(&d.repo, &d.path, d.start_line, d.end_line),
        d.symbol,
        d.kind,
        d.language,
        d.version,
        d.signature
    )
}

/// `find_definition`.
pub fn definitions(symbol: &str, r: &DefinitionsResponse, max_chars: usize) -> String {
    let mut out = Out::new(max_chars);
    if r.definitions.is_empty() {
        out.line(&format!("no definition of {symbol} is indexed: check the spelling, or search_code for it by words"));
    }
    for d in &r.definitions {
        out.line(&definition_line(d));
    }
    if r.total as usize > r.definitions.len() {
        out.line(&format!(
            "… {} more definitions: narrow with repo or a qualified name",
            r.total as usize - r.definitions.len()
        ));
    }
    out.finish()
}

/// `find_references`: the definitions first, then each use surest first.
pub fn references(symbol: &str, r: &ReferencesResponse, max_chars: usize) -> String {
    let mut out = Out::new(max_chars);
    out.line(&format!(
        "{} reference{} to {symbol}{}",
        r.total,
        if r.total == 1 { "" } else { "s" },
        if (r.total as usize) > r.references.len() {
            format!(" (showing {})", r.references.len())
        } else {
            String::new()
        }
    ));
    for d in r.definitions.iter().take(5) {
        out.line(&format!("defined at {}", definition_line(d)));
    }
    for x in &r.references {
        let inside = if x.enclosing.is_empty() { String::new() } else { format!(" in {}", x.enclosing) };
        out.line(&format!(
            "{} [{}, {}]{inside}: {}",
            span(&x.repo, &x.path, x.line, x.line),
            x.kind,
            x.resolution,
            x.text
        ));
    }
    out.finish()
}

/// `find_callers`: one line per calling definition, its span first, then its call lines.
pub fn callers(symbol: &str, r: &CallersResponse, max_chars: usize) -> String {
    let mut out = Out::new(max_chars);
    let shown =
        if (r.total as usize) > r.callers.len() { format!(" (showing {})", r.callers.len()) } else { String::new() };
    out.line(&format!("{} caller{} of {symbol}{shown}", r.total, if r.total == 1 { "" } else { "s" }));
    for d in r.definitions.iter().take(5) {
        out.line(&format!("defined at {}", definition_line(d)));
    }
    for c in &r.callers {
        let at = match (c.start_line, c.symbol.is_empty()) {
            (0, _) | (_, true) => format!("{}/{}", c.repo, c.path),
            (start, false) => span(&c.repo, &c.path, start, c.end_line),
        };
        let who = if c.symbol.is_empty() { "(file level)".to_string() } else { c.symbol.clone() };
        let lines: Vec<String> = c.lines.iter().map(u32::to_string).collect();
        out.line(&format!("{at} {who} [{}] calls at line {}: {}", c.resolution, lines.join(", "), c.text));
    }
    out.finish()
}

/// `list_symbols`: a file's definitions, nested ones indented under their container.
pub fn outline(repo: &str, path: &str, r: &DefinitionsResponse, max_chars: usize) -> String {
    let mut out = Out::new(max_chars);
    out.line(&format!("{repo}/{path}: {} definitions", r.definitions.len()));
    let mut open: Vec<u32> = Vec::new();
    for d in &r.definitions {
        while open.last().is_some_and(|&end| d.start_line > end) {
            open.pop();
        }
        let indent = "  ".repeat(open.len() + 1);
        out.line(&format!("{indent}{}-{} {} {}: {}", d.start_line, d.end_line, d.kind, d.symbol, d.signature));
        open.push(d.end_line);
    }
    out.finish()
}

/// `read_code`: where the lines come from, a warning when the file changed, then the lines.
pub fn file(f: &FileResponse, max_chars: usize) -> String {
    let mut out = Out::new(max_chars);
    let commit =
        if f.commit.is_empty() { String::new() } else { format!(" at {}", &f.commit[..f.commit.len().min(12)]) };
    out.line(&format!(
        "{} ({}, v{}{commit}, {} lines, {})",
        span(&f.repo, &f.path, f.start_line, f.end_line),
        f.language,
        f.version,
        f.total_lines,
        if f.origin == "disk" { "as indexed, checked against the file on disk" } else { "as indexed, from its chunks" }
    ));
    if f.stale {
        out.line(&format!("warning: stale: {}", f.stale_reason));
    } else if !f.stale_reason.is_empty() {
        out.line(&format!("note: {}", f.stale_reason));
    }
    code(&mut out, &f.text, f.start_line, usize::MAX);
    if f.end_line < f.total_lines && !out.full() {
        out.line(&format!(
            "… lines {}-{} follow: read_code with start_line {}",
            f.end_line + 1,
            f.total_lines,
            f.end_line + 1
        ));
    }
    out.finish()
}

/// `list_repos` / `index_status`: one line per repo.
pub fn repos(repos: &[RepoSummary], now_ms: u64, max_chars: usize) -> String {
    let mut out = Out::new(max_chars);
    if repos.is_empty() {
        out.line(
            "no repository is indexed or visible to this token: index one with `codeintel index PATH --repo NAME`",
        );
    }
    for r in repos {
        let langs: Vec<String> = r.languages.iter().map(|l| format!("{} {}", l.language, l.chunks)).collect();
        let age = now_ms.saturating_sub(r.created_unix_ms) / 1000;
        let age = match age {
            0..=119 => format!("{age} s ago"),
            120..=7199 => format!("{} min ago", age / 60),
            7200..=172_799 => format!("{} h ago", age / 3600),
            _ => format!("{} days ago", age / 86_400),
        };
        let at = match (r.commit.is_empty(), r.dirty) {
            (true, _) => String::new(),
            (false, dirty) => format!(
                " at commit {}{}{}",
                &r.commit[..r.commit.len().min(12)],
                if r.branch.is_empty() { String::new() } else { format!(" ({})", r.branch) },
                if dirty { " with uncommitted changes" } else { "" }
            ),
        };
        out.line(&format!(
            "{} v{}: {} chunks in {} files ({}); {} definitions, {} references; indexed {age} from {}{at}",
            r.repo,
            r.version,
            r.chunks,
            r.files,
            langs.join(", "),
            r.definitions,
            r.references,
            r.source
        ));
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_drops_whole_lines_and_says_how_many() {
        let mut out = Out::new(200);
        for i in 0..20 {
            out.line(&format!("line {i:02} of some code"));
        }
        let s = out.finish();
        assert!(s.len() <= 200, "{} chars", s.len());
        let shown: Vec<&str> = s.lines().filter(|l| l.starts_with("line ")).collect();
        assert_eq!(shown.len(), 3, "{s}");
        assert!(shown.iter().all(|l| l.ends_with("of some code")), "no line is cut: {s}");
        assert!(s.contains("… 17 more lines not shown (max_chars 200)"), "{s}");
    }

    #[test]
    fn a_hit_shows_its_span_first_and_names_the_rest_as_a_range() {
        let h = SearchHit {
            repo: "shop".into(),
            path: "src/cart.py".into(),
            start_line: 10,
            end_line: 69,
            symbol: "Cart.total".into(),
            language: "python".into(),
            score: 0.5,
            text: (10..70).map(|i| format!("x{i}")).collect::<Vec<_>>().join("\n"),
            ..Default::default()
        };
        let s = hits(&[h], &[], 100_000);
        let first = s.lines().next().unwrap();
        assert_eq!(first, "[1] shop/src/cart.py:10-69 Cart.total (python) score 0.500");
        assert!(s.contains("10 | x10"), "{s}");
        assert!(s.contains("49 | x49") && !s.contains("50 | x50"), "{s}");
        assert!(s.contains("… 20 more lines: read_code shop src/cart.py 50-69"), "{s}");
        assert!(!s.contains("stale"), "{s}");
    }

    #[test]
    fn hits_and_citations_name_their_commit_and_flag_a_stale_file() {
        let h = SearchHit {
            repo: "shop".into(),
            path: "a.py".into(),
            start_line: 1,
            end_line: 2,
            language: "python".into(),
            text: "x = 1\ny = 2".into(),
            commit: "0123456789abcdef0123".into(),
            stale: true,
            ..Default::default()
        };
        let s = hits(&[h], &[], 10_000);
        let mut lines = s.lines();
        assert_eq!(lines.next().unwrap(), "[1] shop/a.py:1-2 (python) score 0.000 @0123456789ab");
        assert!(lines.next().unwrap().contains("stale: the file on disk changed"), "{s}");
        let c = Citation {
            index: 1,
            repo: "shop".into(),
            path: "a.py".into(),
            start_line: 1,
            end_line: 2,
            commit: "0123456789abcdef0123".into(),
            ..Default::default()
        };
        let s = answer("It sets x [1].", &[c], &[], 10_000);
        assert!(s.starts_with("[1] shop/a.py:1-2 @0123456789ab\n"), "{s}");
        assert!(!s.contains("stale"), "{s}");
    }

    #[test]
    fn a_stale_file_is_flagged_before_its_lines() {
        let f = FileResponse {
            repo: "shop".into(),
            path: "a.py".into(),
            language: "python".into(),
            version: 2,
            text: "a\nb".into(),
            start_line: 4,
            end_line: 5,
            total_lines: 9,
            origin: "chunks".into(),
            stale: true,
            stale_reason: "the file on disk changed since v000002 was indexed".into(),
            ..Default::default()
        };
        let s = file(&f, 10_000);
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("shop/a.py:4-5 (python, v2, 9 lines"), "{s}");
        assert_eq!(lines[1], "warning: stale: the file on disk changed since v000002 was indexed");
        assert_eq!(lines[2], "4 | a");
        assert!(s.contains("lines 6-9 follow"), "{s}");
    }

    #[test]
    fn an_outline_indents_members_under_their_container() {
        let d = |s: u32, e: u32, sym: &str, kind: &str| codeintel_core::proto::v1::Definition {
            start_line: s,
            end_line: e,
            symbol: sym.into(),
            kind: kind.into(),
            ..Default::default()
        };
        let r = DefinitionsResponse {
            definitions: vec![d(1, 20, "Cart", "class"), d(3, 8, "Cart.add", "method"), d(22, 30, "main", "function")],
            total: 3,
        };
        let s = outline("shop", "cart.py", &r, 10_000);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[1], "  1-20 class Cart: ");
        assert_eq!(lines[2], "    3-8 method Cart.add: ");
        assert_eq!(lines[3], "  22-30 function main: ");
    }
}
