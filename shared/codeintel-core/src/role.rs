//! What a chunk is to someone asking how the code behaves: the implementing code, a test of it,
//! prose and configuration about it (docs, READMEs, Makefiles, YAML), or the top-level lines of
//! a code file that no definition holds (imports, module docs, script statements). Decided from
//! the path, the language the chunker gave it and the enclosing definition, the way code search
//! engines tell tests from code (`tests/`, `test_*.py`, `*_test.go`, `*.spec.ts`, Rust `mod
//! tests`).

use crate::chunk::Chunk;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A definition (function, method, type, ...) outside tests.
    Code,
    Test,
    Prose,
    /// A line window of a code file: the lines between definitions (imports, module docs,
    /// constants, script statements). What a description of behaviour describes is nearly
    /// always a definition.
    TopLevel,
}

/// Folders whose files are tests, benchmarks or fixtures. Not `testing`: in libraries that is
/// as often the test helpers users call (`numpy.testing`) as tests.
const TEST_DIRS: &[&str] = &["test", "tests", "__tests__", "spec", "specs", "testdata", "fixtures", "benches"];

/// Whether `path` (repo-relative, `/`-separated) is a test file by its folders or its name.
pub fn is_test_path(path: &str) -> bool {
    let mut parts: Vec<&str> = path.split('/').collect();
    let file = parts.pop().unwrap_or("");
    if parts.iter().any(|d| TEST_DIRS.contains(&d.to_ascii_lowercase().as_str())) {
        return true;
    }
    let (stem, ext) = file.rsplit_once('.').unwrap_or((file, ""));
    match ext {
        "py" | "pyi" => stem.starts_with("test_") || stem.ends_with("_test") || stem == "conftest" || stem == "tests",
        "rs" => stem.ends_with("_test") || stem.ends_with("_tests") || stem == "tests",
        "go" => stem.ends_with("_test"),
        "java" | "kt" | "scala" | "cs" => stem.ends_with("Test") || stem.ends_with("Tests"),
        "rb" => stem.ends_with("_spec") || stem.ends_with("_test"),
        "js" | "mjs" | "cjs" | "jsx" | "ts" | "mts" | "cts" | "tsx" => {
            stem.ends_with(".test") || stem.ends_with(".spec") || stem.ends_with("-test") || stem.ends_with("_test")
        }
        _ => false,
    }
}

/// The chunk's role: a test when its file is one or it sits in a Rust `mod tests`/`mod test`
/// (or a `Test*` class in Python); prose for the text and configuration languages
/// ([`crate::chunk::language_for_path`]: Markdown, reST, TOML, YAML, JSON, Makefiles...);
/// top-level for a chunk of code that names no definition (a line window); code otherwise.
pub fn role(c: &Chunk) -> Role {
    if matches!(c.language.as_str(), "text" | "config") {
        return Role::Prose;
    }
    // The qualifier: the chunk's parent when it has one, else what precedes the name in its
    // symbol (served chunks carry no parent: `tests::checks_x` says where it sits).
    let qualifier = if c.parent.is_empty() {
        c.symbol.rfind([':', '.']).map_or("", |i| c.symbol[..i].trim_end_matches(':'))
    } else {
        c.parent.as_str()
    };
    let in_tests = qualifier.split([':', '.']).any(|p| p == "tests" || p == "test")
        || (c.language == "python" && qualifier.split('.').any(|p| p.starts_with("Test")));
    if in_tests || is_test_path(&c.path) {
        Role::Test
    } else if c.symbol.is_empty() {
        Role::TopLevel
    } else {
        Role::Code
    }
}

/// Which roles other than code a query asks for by name ("which test covers ...", "where is it
/// documented", "the Makefile target"): those are not put after the code. Not "spec": in a
/// question it is far more often a specification ("the core metadata spec", "the HTTP spec")
/// than an RSpec or Jasmine file.
pub fn asked_for(query: &str) -> (bool, bool) {
    let mut tests = false;
    let mut prose = false;
    for w in query.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        let w = w.to_ascii_lowercase();
        tests |= matches!(
            w.as_str(),
            "test" | "tests" | "tested" | "testing" | "unittest" | "pytest" | "fixture" | "fixtures"
        );
        prose |= matches!(
            w.as_str(),
            "doc"
                | "docs"
                | "documentation"
                | "documented"
                | "readme"
                | "changelog"
                | "guide"
                | "tutorial"
                | "manual"
                | "makefile"
                | "dockerfile"
                | "yaml"
                | "toml"
                | "json"
                | "markdown"
        );
    }
    (tests, prose)
}

/// Kinds of definition that declare data or an interface (a struct's fields, an enum's
/// variants, a trait's signatures, a constant, a type alias, a module) rather than do
/// something. Classes are not among them: a class holds its methods' code.
const DECLARATION_KINDS: &[&str] = &["struct", "enum", "union", "const", "trait", "interface", "type", "module"];

/// Whether the chunk is a declaration of data or an interface (see [`DECLARATION_KINDS`]).
pub fn is_declaration(c: &Chunk) -> bool {
    DECLARATION_KINDS.contains(&c.kind.as_str())
}

/// Words that open a scenario rather than a question ("if I ...", "my retries ...", "after the
/// first call ..."); [`crate::query::is_question`] knows the question words.
const SCENARIO_OPENERS: &[&str] = &["if", "i", "my", "we", "after"];

/// Whether a query asks how code behaves ("how are failed calls retried?", "if I drop a
/// progress bar, is it cleared?"): a question ([`crate::query::is_question`]) or a scenario
/// that does not look a thing up ("what is X?", "where is X defined?", "which struct ...") and
/// names no declaration ("the config fields", "which type ..."). What answers such a question
/// is code that does something, not the declaration of its data.
pub fn asks_about_behaviour(query: &str) -> bool {
    let words: Vec<String> = query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let Some(first) = words.first() else { return false };
    if !(crate::query::is_question(query) || SCENARIO_OPENERS.contains(&first.as_str())) {
        return false;
    }
    let second = words.get(1).map(String::as_str).unwrap_or("");
    let lookup = matches!((first.as_str(), second), ("what" | "where", "is" | "are") | ("what's" | "where's", _));
    let names_declaration = words.iter().any(|w| {
        matches!(
            w.as_str(),
            "struct"
                | "structs"
                | "enum"
                | "enums"
                | "variant"
                | "variants"
                | "trait"
                | "traits"
                | "interface"
                | "interfaces"
                | "type"
                | "types"
                | "constant"
                | "constants"
                | "const"
                | "field"
                | "fields"
                | "alias"
        )
    });
    !lookup && !names_declaration
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A definition's chunk (it has a symbol).
    fn chunk(path: &str, language: &str, parent: &str) -> Chunk {
        Chunk {
            path: path.into(),
            language: language.into(),
            parent: parent.into(),
            symbol: "item".into(),
            ..Default::default()
        }
    }

    #[test]
    fn tells_tests_and_prose_from_code() {
        for p in [
            "tests/e2e/tests/faults.rs",
            "services/answer-svc/src/orchestrator_tests.rs",
            "pkg/test_util.py",
            "pkg/util_test.py",
            "conftest.py",
            "net/http/server_test.go",
            "src/app.test.ts",
            "src/app.spec.js",
            "lib/__tests__/x.js",
            "src/test/java/FooTest.java",
            "spec/models/user_spec.rb",
        ] {
            assert!(is_test_path(p), "{p}");
        }
        for p in [
            "src/fusion.rs",
            "pkg/testing_utils_are_not_tests.txt",
            "numpy/testing/utils.py",
            "src/contest.py",
            "src/latest.rs",
            "attest.js",
        ] {
            assert!(!is_test_path(p), "{p}");
        }
        assert_eq!(role(&chunk("services/answer-svc/src/fusion.rs", "rust", "")), Role::Code);
        assert_eq!(role(&chunk("services/answer-svc/src/fusion.rs", "rust", "tests")), Role::Test);
        assert_eq!(role(&chunk("src/a.rs", "rust", "outer::tests")), Role::Test);
        assert_eq!(role(&chunk("pkg/mod.py", "python", "TestParser")), Role::Test);
        // As served (no parent), the symbol's qualifier says the same.
        let served = |path: &str, language: &str, symbol: &str| Chunk {
            path: path.into(),
            language: language.into(),
            symbol: symbol.into(),
            ..Default::default()
        };
        assert_eq!(role(&served("src/pipeline/mod.rs", "rust", "tests::descriptions_lean_on_dense")), Role::Test);
        assert_eq!(role(&served("src/a.rs", "rust", "outer::tests::checks")), Role::Test);
        assert_eq!(role(&served("pkg/mod.py", "python", "TestParser.test_empty")), Role::Test);
        assert_eq!(role(&served("src/fusion.rs", "rust", "Route::natural_language")), Role::Code);
        assert_eq!(role(&served("src/fusion.rs", "rust", "tests_helper")), Role::Code);
        assert_eq!(role(&served("pkg/mod.py", "python", "Tester")), Role::Code);
        assert_eq!(role(&chunk("pkg/mod.py", "python", "Parser")), Role::Code);
        assert_eq!(role(&chunk("docs/configuration.md", "text", "")), Role::Prose);
        assert_eq!(role(&chunk("Makefile", "config", "")), Role::Prose);
        assert_eq!(role(&chunk("tests/data.json", "config", "")), Role::Prose);
        // A line window of code (no symbol): top-level lines; in a test file still a test.
        assert_eq!(role(&served("src/fusion.rs", "rust", "")), Role::TopLevel);
        assert_eq!(role(&served("scripts/codeintel-questions.py", "python", "")), Role::TopLevel);
        assert_eq!(role(&served("tests/test_x.py", "python", "")), Role::Test);
        assert_eq!(role(&served("README.md", "text", "")), Role::Prose);
    }

    #[test]
    fn behaviour_questions_are_told_from_lookups_and_descriptions() {
        assert!(asks_about_behaviour("how does the answer service fuse dense and lexical results?"));
        assert!(asks_about_behaviour("If I drop a progress bar without finishing it, is it cleared"));
        assert!(asks_about_behaviour("my retries never stop: why?"));
        assert!(asks_about_behaviour("Does stop_after_attempt(3) count the first call?"));
        // Descriptions (doc sentences) and names are not questions.
        assert!(!asks_about_behaviour("A converter that allows an attribute to be optional"));
        assert!(!asks_about_behaviour("Command::flatten_help"));
        assert!(!asks_about_behaviour(""));
        // Lookups of a thing, and questions that name a declaration, want the declaration.
        assert!(!asks_about_behaviour("what is a non-blocking iterator over messages in a channel?"));
        assert!(!asks_about_behaviour("where is the retry state defined?"));
        assert!(!asks_about_behaviour("which struct holds the bar's style?"));
        assert!(!asks_about_behaviour("how are the config fields of the answer service validated?"));
        assert!(!asks_about_behaviour("what's the default fusion?"));
    }

    #[test]
    fn declarations_are_data_and_interfaces_not_classes() {
        let of = |kind: &str| Chunk { kind: kind.into(), symbol: "X".into(), ..Default::default() };
        for k in ["struct", "enum", "const", "trait", "interface", "type", "module"] {
            assert!(is_declaration(&of(k)), "{k}");
        }
        for k in ["function", "method", "class", "impl", "macro", "window"] {
            assert!(!is_declaration(&of(k)), "{k}");
        }
    }

    #[test]
    fn a_query_that_names_tests_or_docs_asks_for_them() {
        assert_eq!(asked_for("how does the answer service fuse dense and lexical results?"), (false, false));
        assert_eq!(asked_for("which test covers the retry budget?"), (true, false));
        assert_eq!(asked_for("where is hydrate.in_memory documented"), (false, true));
        assert_eq!(asked_for("the Makefile target that runs the tests"), (true, true));
        assert_eq!(asked_for("latest contest results"), (false, false), "whole words only");
        assert_eq!(
            asked_for("what happens to headers that aren't part of the core metadata spec?"),
            (false, false),
            "a spec is a specification here"
        );
    }
}
