//! A code-aware tokenizer: identifiers are kept whole (lower-cased) and also split into their
//! camelCase / PascalCase / snake_case / kebab-case / digit parts, so `parseHTTPHeader2` yields
//! `parsehttpheader2`, `parse`, `http`, `header`, `2`. Punctuation and very common keywords are
//! not evidence and are dropped.

use codeintel_core::query::split_identifier;
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Keywords and filler words that match nearly every chunk.
const STOP: &[&str] = &[
    "self",
    "this",
    "def",
    "fn",
    "let",
    "mut",
    "pub",
    "return",
    "const",
    "var",
    "function",
    "the",
    "an",
    "and",
    "or",
    "of",
    "to",
    "in",
    "is",
    "it",
    "for",
    "if",
    "else",
    "on",
    "be",
    "as",
    "at",
    "by",
    "with",
    "that",
    "from",
    "import",
    "use",
    "new",
    "true",
    "false",
    "none",
    "null",
    "nil",
    "undefined",
    "end",
    "do",
    "then",
    "are",
    "was",
    "this",
    "into",
    "which",
    "when",
    "its",
];

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

fn keep(t: &str) -> bool {
    (t.chars().count() >= 2 || t.chars().all(|c| c.is_numeric())) && !STOP.contains(&t)
}

/// All tokens of `text` with their byte offsets: each identifier whole, then its parts.
pub fn code_tokens(text: &str) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let flush = |s: usize, e: usize, out: &mut Vec<(String, usize, usize)>| {
        let word = &text[s..e];
        let whole = word.trim_matches(|c| c == '_' || c == '$').to_lowercase();
        if keep(&whole) {
            out.push((whole.clone(), s, e));
        }
        let parts = split_identifier(word, true);
        if parts.len() > 1 {
            for p in parts {
                if p != whole && keep(&p) {
                    out.push((p, s, e));
                }
            }
        }
    };
    for (i, c) in text.char_indices() {
        if is_word_char(c) {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            flush(s, i, &mut out);
        }
    }
    if let Some(s) = start {
        flush(s, text.len(), &mut out);
    }
    out
}

#[derive(Clone, Default)]
pub struct CodeTokenizer;

pub struct CodeTokenStream {
    tokens: Vec<Token>,
    index: usize,
}

impl Tokenizer for CodeTokenizer {
    type TokenStream<'a> = CodeTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CodeTokenStream {
        let tokens = code_tokens(text)
            .into_iter()
            .enumerate()
            .map(|(position, (text, from, to))| Token {
                offset_from: from,
                offset_to: to,
                position,
                text,
                position_length: 1,
            })
            .collect();
        CodeTokenStream { tokens, index: 0 }
    }
}

impl TokenStream for CodeTokenStream {
    fn advance(&mut self) -> bool {
        self.index += 1;
        self.index <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.index - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.index - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        code_tokens(s).into_iter().map(|t| t.0).collect()
    }

    #[test]
    fn splits_camel_snake_acronyms_and_digits() {
        assert_eq!(toks("parseHTTPHeader2"), vec!["parsehttpheader2", "parse", "http", "header", "2"]);
        assert_eq!(toks("flatten_help"), vec!["flatten_help", "flatten", "help"]);
        assert_eq!(toks("BytesIOCopy"), vec!["bytesiocopy", "bytes", "io", "copy"]);
        assert_eq!(toks("kebab-case"), vec!["kebab", "case"]);
        assert_eq!(toks("__init__"), vec!["init"]);
    }

    #[test]
    fn drops_punctuation_keywords_and_single_letters() {
        assert_eq!(toks("fn main(x: u32) -> Self { return self.y; }"), vec!["main", "u32", "32"]);
    }

    #[test]
    fn unicode_identifiers_are_words() {
        assert_eq!(toks("größeBerechnen"), vec!["größeberechnen", "größe", "berechnen"]);
    }

    #[test]
    fn token_stream_yields_every_token() {
        let mut t = CodeTokenizer;
        let mut s = t.token_stream("getUserName");
        let mut seen = Vec::new();
        while s.advance() {
            seen.push(s.token().text.clone());
        }
        assert_eq!(seen, vec!["getusername", "get", "user", "name"]);
    }
}
