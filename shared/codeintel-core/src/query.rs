//! Query routing: tells a name lookup (`FooBar`, `fn parse_header`, `Command::flatten_help`,
//! `where is _get_text_stream defined`) from a natural-language question.

/// Splits one identifier into its parts (without the whole), lower-cased: at `_`, `$` and `-`,
/// at camelCase and PascalCase boundaries (`HTTPHeader` -> `http`, `header`), and, with
/// `split_digits`, between letters and digits (`header2` -> `header`, `2`); without it a digit
/// stays with its word and only an upper-case letter after a digit starts a new part
/// (`i64`, `u8` stay whole: the embedder's words spell them out).
pub fn split_identifier(ident: &str, split_digits: bool) -> Vec<String> {
    let chars: Vec<char> = ident.chars().collect();
    let mut parts = Vec::new();
    let mut cur = String::new();
    for i in 0..chars.len() {
        let c = chars[i];
        if c == '_' || c == '$' || c == '-' {
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if let Some(&p) = cur.chars().last().as_ref() {
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let digits = if split_digits {
                (p.is_alphabetic() && c.is_numeric()) || (p.is_numeric() && c.is_alphabetic())
            } else {
                p.is_numeric() && c.is_uppercase()
            };
            let boundary = (p.is_lowercase() && c.is_uppercase())
                || (p.is_uppercase() && c.is_uppercase() && next_lower)
                || digits;
            if boundary {
                parts.push(std::mem::take(&mut cur));
            }
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts.into_iter().map(|p| p.to_lowercase()).collect()
}

/// What the query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryKind {
    /// A definition by name; `name` as typed (qualified names keep their separators).
    Identifier {
        name: String,
    },
    NaturalLanguage,
}

/// Words that announce a definition kind before its name.
const KIND_WORDS: &[&str] = &[
    "class",
    "struct",
    "enum",
    "trait",
    "fn",
    "def",
    "func",
    "function",
    "interface",
    "type",
    "impl",
    "mod",
    "module",
    "macro",
    "method",
    "const",
    "static",
    "var",
    "let",
];

fn is_identifier(s: &str) -> bool {
    let s = s.trim_end_matches("()").trim_end_matches('!');
    !s.is_empty()
        && s.split("::").all(|part| {
            !part.is_empty()
                && part.split('.').all(|p| {
                    let mut chars = p.chars();
                    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_' || c == '$')
                        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
                })
        })
}

/// Does this single word look like code rather than English? (`parse_header`, `HTTPAdapter`,
/// `flatten_help`, `Foo::bar`; not `parse` or `Parse`.)
fn looks_like_code(s: &str) -> bool {
    let s = s.trim_end_matches("()").trim_end_matches('!');
    let inner_upper = s.chars().skip(1).any(|c| c.is_uppercase());
    s.contains('_') || s.contains("::") || s.contains('.') || inner_upper || s.starts_with('$')
}

/// Words that ask for a definition.
const LOOKUP_WORDS: &[&str] =
    &["find", "defined", "declared", "definition", "declaration", "implementation", "implemented", "locate"];

/// Words around a name that add nothing to it.
const FILLER_WORDS: &[&str] =
    &["where", "is", "are", "the", "a", "an", "of", "show", "me", "source", "code", "for", "go", "to"];

/// Words that open a question (`how does ...`, `where is ...`, `does it ...`).
const QUESTION_WORDS: &[&str] = &[
    "how", "what", "where", "why", "when", "which", "who", "whose", "does", "do", "did", "is", "are", "can", "could",
    "should", "would", "will",
];

/// Whether a natural-language query is a question (it ends with `?` or opens with a question
/// word) rather than a description of what some code does (`Returns the value of ...`, the
/// form of a doc comment). Questions about behaviour often span several definitions and name
/// the domain's words, so they keep lexical retrieval at full weight; descriptions lean on the
/// embedder, which is trained on exactly such sentences (`answer.question_dense_weight`).
pub fn is_question(query: &str) -> bool {
    let q = query.trim();
    q.ends_with('?')
        || q.split_whitespace()
            .next()
            .is_some_and(|w| QUESTION_WORDS.contains(&w.to_ascii_lowercase().trim_end_matches(',')))
}

pub fn classify(query: &str) -> QueryKind {
    let q = query.trim().trim_end_matches('?').trim();
    let words: Vec<&str> = q.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let is_kind = |w: &str| KIND_WORDS.contains(&w);
    let is_lookup = |w: &str| LOOKUP_WORDS.contains(&w);
    let is_filler = |w: &str| FILLER_WORDS.contains(&w) || is_lookup(w);
    let rest: Vec<&str> =
        words.iter().zip(&lower).filter(|(_, l)| !is_kind(l) && !is_filler(l)).map(|(w, _)| *w).collect();
    let announced = lower.iter().any(|l| is_kind(l) || is_lookup(l));
    let clean = |w: &str| w.trim_end_matches("()").trim_end_matches('!').to_string();
    match rest.as_slice() {
        // `FooBar`, `fn parse_header`, `where is _get_text_stream defined`, `Translator struct definition`
        [w] if is_identifier(w) && (announced || looks_like_code(w)) => QueryKind::Identifier { name: clean(w) },
        // `impl Arg fn render_arg_val`: a member of a type.
        [t, m] if lower.first().is_some_and(|f| f == "impl") && is_identifier(t) && is_identifier(m) => {
            QueryKind::Identifier { name: format!("{}::{}", clean(t), clean(m)) }
        }
        _ => QueryKind::NaturalLanguage,
    }
}

/// Lower-cased lookup keys of a symbol: the qualified name with `::` and `.` unified, and the
/// last segment. `Command::flatten_help` -> [`command.flatten_help`, `flatten_help`].
pub fn symbol_keys(symbol: &str) -> Vec<String> {
    let full = symbol.replace("::", ".").to_lowercase();
    let mut keys = vec![full.clone()];
    if let Some(last) = full.rsplit('.').next() {
        if last != full {
            keys.push(last.to_string());
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: &str) -> QueryKind {
        QueryKind::Identifier { name: n.into() }
    }

    #[test]
    fn names_and_definition_lookups_are_identifiers() {
        assert_eq!(classify("class BytesIOCopy"), id("BytesIOCopy"));
        assert_eq!(classify("fn unwrap_class_unicode"), id("unwrap_class_unicode"));
        assert_eq!(classify("Command::flatten_help"), id("Command::flatten_help"));
        assert_eq!(classify("where is _get_text_stream defined"), id("_get_text_stream"));
        assert_eq!(classify("where is _get_text_stream defined?"), id("_get_text_stream"));
        assert_eq!(classify("HTTPAdapter"), id("HTTPAdapter"));
        assert_eq!(classify("parse_header()"), id("parse_header"));
        assert_eq!(classify("def get"), id("get"));
        assert_eq!(classify("Command._parseCommand implementation"), id("Command._parseCommand"));
        assert_eq!(classify("Translator struct definition"), id("Translator"));
        assert_eq!(classify("_make_order function"), id("_make_order"));
        assert_eq!(classify("impl Arg fn render_arg_val"), id("Arg::render_arg_val"));
        assert_eq!(classify("where is class Foo defined"), id("Foo"));
    }

    #[test]
    fn questions_and_plain_words_are_natural_language() {
        assert_eq!(classify("how does the session middleware refresh tokens?"), QueryKind::NaturalLanguage);
        assert_eq!(classify("parse"), QueryKind::NaturalLanguage);
        assert_eq!(classify("Returns the value"), QueryKind::NaturalLanguage);
        assert_eq!(classify(""), QueryKind::NaturalLanguage);
        assert_eq!(classify("where is the config loaded"), QueryKind::NaturalLanguage);
        assert_eq!(classify("parse the command line"), QueryKind::NaturalLanguage);
        assert_eq!(classify("the parser"), QueryKind::NaturalLanguage);
    }

    #[test]
    fn questions_are_told_from_descriptions() {
        assert!(is_question("how does the answer service fuse dense and lexical results?"));
        assert!(is_question("Where is the retry policy configured"));
        assert!(is_question("the limit on multipart parts?"));
        assert!(is_question("does the store retry on 503"));
        assert!(!is_question("Returns the value of the header as a string"));
        assert!(!is_question("A converter that allows an attribute to be optional"));
        assert!(!is_question("Gets an IEEE754 double-precision floating point number from self"));
        assert!(!is_question("howl at the moon"));
        assert!(!is_question(""));
    }

    #[test]
    fn symbol_keys_unify_separators() {
        assert_eq!(symbol_keys("Command::flatten_help"), vec!["command.flatten_help", "flatten_help"]);
        assert_eq!(symbol_keys("Greeter.loud"), vec!["greeter.loud", "loud"]);
        assert_eq!(symbol_keys("top"), vec!["top"]);
    }
}
