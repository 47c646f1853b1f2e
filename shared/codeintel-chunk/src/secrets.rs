//! Secrets the indexer will not take. A file is left out of the index (and counted, with the
//! rule that matched) when its name is one that holds keys or credentials ([`NAME_RULES`]), or
//! when its text holds a private key block, a cloud or API token or a hard-coded credential
//! ([`secret_in_text`]). Rules report their name only, never what they matched.
//!
//! `index.skip_secrets = false` turns the rules off, `index.secret_patterns_extra` adds regular
//! expressions, and `index.allow_secret_paths` exempts paths ([`SecretPolicy`]).

use std::sync::LazyLock;

use globset::GlobSet;
use regex::Regex;

/// File-name rules, `(pattern, rule)`. A pattern is matched against the lower-cased file name
/// (the last path component): a name (`id_rsa`), `*.ext`, `name.*`, or `prefix*suffix`.
pub const NAME_RULES: &[(&str, &str)] = &[
    // SSH, TLS and signing keys.
    ("id_rsa", "private key file"),
    ("id_dsa", "private key file"),
    ("id_ecdsa", "private key file"),
    ("id_ed25519", "private key file"),
    ("*_rsa", "private key file"),
    ("*_dsa", "private key file"),
    ("*_ecdsa", "private key file"),
    ("*_ed25519", "private key file"),
    ("*.pem", "private key file"),
    ("*.key", "private key file"),
    ("*.ppk", "private key file"),
    ("*.p8", "private key file"),
    ("*.gpg", "key store"),
    ("secring.*", "private key file"),
    // Key stores.
    ("*.p12", "key store"),
    ("*.pfx", "key store"),
    ("*.jks", "key store"),
    ("*.keystore", "key store"),
    ("*.keytab", "key store"),
    // Environment files.
    (".env", "environment file"),
    (".env.*", "environment file"),
    ("*.env", "environment file"),
    // Credential files of tools and clouds.
    (".netrc", "credentials file"),
    ("_netrc", "credentials file"),
    (".npmrc", "credentials file"),
    (".pypirc", "credentials file"),
    (".pgpass", "credentials file"),
    (".git-credentials", "credentials file"),
    (".dockercfg", "credentials file"),
    (".s3cfg", "credentials file"),
    (".htpasswd", "credentials file"),
    ("credentials", "credentials file"),
    ("credentials.json", "credentials file"),
    ("client_secret*.json", "credentials file"),
    ("secrets.yml", "credentials file"),
    ("secrets.yaml", "credentials file"),
    ("secrets.json", "credentials file"),
    // Password databases.
    ("*.kdbx", "password database"),
    ("*.kdb", "password database"),
    // Terraform state holds every secret of the resources it manages.
    ("terraform.tfstate", "Terraform state"),
    ("*.tfstate", "Terraform state"),
    ("*.tfstate.backup", "Terraform state"),
];

/// Whether the lower-cased file `name` matches a [`NAME_RULES`] pattern.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => name == pattern,
        Some((prefix, suffix)) => {
            name.len() >= prefix.len() + suffix.len() && name.starts_with(prefix) && name.ends_with(suffix)
        }
    }
}

/// The [`NAME_RULES`] rule `path`'s file name matches, if any (`path` is repo-relative, `/`
/// separated).
pub fn secret_in_name(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    NAME_RULES.iter().find(|(pattern, _)| name_matches(pattern, &name)).map(|(_, rule)| *rule)
}

/// Content rules, `(rule, regular expression)`, in the order they are tried; each is specific
/// enough that a match is a secret (the generic assignment rule, with its placeholder checks,
/// is [`hard_coded_credential`]).
const TEXT_RULES: &[(&str, &str)] = &[
    // The header, then optional headers (`Proc-Type:`, `Version:`), then key material: a parser
    // that only names the header is not a key. Newlines may be escaped (`\n` in JSON).
    (
        "private key block",
        concat!(
            r"-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP|SSH2 ENCRYPTED) )?PRIVATE KEY(?: BLOCK)?-----",
            r"(?:\\[rn]|\s)+(?:[A-Za-z][A-Za-z0-9-]*: ?[^\r\n\\]*(?:\\[rn]|\s)+)*[A-Za-z0-9+/=]{32,}",
        ),
    ),
    ("AWS access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    (
        "AWS secret access key",
        concat!(
            r#"(?i)(?:aws[\w.\-]*secret|secret[\w.\-]*aws)[\w.\-]*["']?\s*(?::=|=>|[:=])\s*["']?"#,
            r"(?-i:[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)",
        ),
    ),
    ("GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,})\b"),
    ("Slack token", r"\bxox[baprs]-[0-9]{8,}-[0-9A-Za-z-]{8,}"),
    ("Slack webhook URL", r"https://hooks\.slack\.com/services/T[0-9A-Z]{8,}/B[0-9A-Z]{8,}/[0-9A-Za-z]{20,}"),
    ("Google API key", r"\bAIza[0-9A-Za-z_\-]{35}(?:[^0-9A-Za-z_\-]|$)"),
    ("Stripe live key", r"\b(?:sk|rk)_live_[0-9A-Za-z]{20,}\b"),
];

/// Name of the generic rule: a quoted literal of 16 or more characters assigned to a name that
/// ends in `password`, `secret`, `token`, `api_key`, `access_key`, `private_key`, ...
pub const HARD_CODED_CREDENTIAL: &str = "hard-coded credential";

static TEXT_REGEXES: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    TEXT_RULES.iter().map(|(rule, re)| (*rule, Regex::new(re).expect("built-in secret rule compiles"))).collect()
});

/// `<name> = "<literal>"` (also `:`, `:=`, `=>`, a quoted name, a Python string prefix), where
/// the name ends in a credential word (`db_password`, `API_TOKEN`, `secretKey`, `client_secret`,
/// `secret_key_base`) and the literal has no quote or space; group 1 is the literal.
static CREDENTIAL_ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)(?:password|passwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|auth[_\-]?key)",
        r#"(?:[_\-]?key(?:[_\-]?base)?|s)?["']?\s*(?::=|=>|[:=])\s*[rbuf]{0,2}["']([^"'\s]{16,})["']"#,
    ))
    .expect("built-in secret rule compiles")
});

/// Words that mark a literal as a placeholder, an example or a template, not a credential.
const PLACEHOLDERS: &[&str] = &[
    "xxx",
    "***",
    "...",
    "changeme",
    "change_me",
    "change-me",
    "example",
    "placeholder",
    "your",
    "dummy",
    "sample",
    "fake",
    "mock",
    "test",
    "redacted",
    "replace",
    "insert",
    "todo",
    "secret",
    "password",
    "token",
    "foobar",
];

/// Characters of templates, interpolation, paths and calls, not of credentials.
const TEMPLATE_CHARS: &[char] = &['{', '}', '<', '>', '$', '%', '/', '\\', '.', '(', ')', '[', ']'];

/// Whether a literal assigned to a credential name looks like a real credential: mixed
/// character classes (a letter and a digit, and three classes of lower, upper, digit, symbol,
/// or 32+ hex digits), at least 8 distinct characters, and nothing of a placeholder, template,
/// path, URL or interpolation (`changeme`, `xxx`, `<...>`, `${...}`, `{{...}}`, `%s`, `/`).
pub fn looks_like_credential(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    if value.len() < 16 || PLACEHOLDERS.iter().any(|p| lower.contains(p)) {
        return false;
    }
    if value.contains(TEMPLATE_CHARS) {
        return false;
    }
    let lowers = value.chars().any(|c| c.is_ascii_lowercase());
    let uppers = value.chars().any(|c| c.is_ascii_uppercase());
    let digits = value.chars().any(|c| c.is_ascii_digit());
    let symbols = value.chars().any(|c| !c.is_ascii_alphanumeric());
    let classes = [lowers, uppers, digits, symbols].iter().filter(|x| **x).count();
    let hex = value.len() >= 32 && value.chars().all(|c| c.is_ascii_hexdigit());
    let mut distinct: Vec<char> = value.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    (lowers || uppers) && digits && (classes >= 3 || hex) && distinct.len() >= 8
}

/// Whether `text` assigns a literal that [`looks_like_credential`] to a credential name.
pub fn hard_coded_credential(text: &str) -> bool {
    CREDENTIAL_ASSIGNMENT.captures_iter(text).any(|c| c.get(1).is_some_and(|v| looks_like_credential(v.as_str())))
}

/// The content rule `text` matches, if any: a private key block, an AWS access key id or a
/// secret key assigned to an `aws..secret` name, a GitHub, Slack, Google API or Stripe live
/// token, a Slack webhook URL, or a [`HARD_CODED_CREDENTIAL`].
pub fn secret_in_text(text: &str) -> Option<&'static str> {
    if let Some((rule, _)) = TEXT_REGEXES.iter().find(|(_, re)| re.is_match(text)) {
        return Some(*rule);
    }
    hard_coded_credential(text).then_some(HARD_CODED_CREDENTIAL)
}

/// The secret rules as configured (`index.skip_secrets`, `index.secret_patterns_extra`,
/// `index.allow_secret_paths`).
#[derive(Debug, Clone)]
pub struct SecretPolicy {
    enabled: bool,
    /// Extra content patterns, with their source text (reported as the rule).
    extra: Vec<(String, Regex)>,
    /// Repo-relative paths no rule applies to.
    allow: Option<GlobSet>,
}

impl Default for SecretPolicy {
    /// The built-in rules, no extra pattern, no exempt path.
    fn default() -> Self {
        Self { enabled: true, extra: Vec::new(), allow: None }
    }
}

impl SecretPolicy {
    /// The rules on (`enabled`) or off, plus `extra_patterns` (regular expressions matched
    /// against a file's text) and minus the paths matching `allow_paths` (globs, as `--include`).
    /// Errors name the bad pattern or glob.
    pub fn new(enabled: bool, extra_patterns: &[String], allow_paths: &[String]) -> Result<Self, String> {
        let extra = extra_patterns
            .iter()
            .map(|p| {
                Regex::new(p)
                    .map(|re| (p.clone(), re))
                    .map_err(|e| format!("index.secret_patterns_extra: {p:?} is not a valid regular expression: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let allow =
            codeintel_core::scope::glob_set(allow_paths).map_err(|e| format!("index.allow_secret_paths: {e}"))?;
        Ok(Self { enabled, extra, allow })
    }

    /// No rule at all (`index.skip_secrets = false`).
    pub fn off() -> Self {
        Self { enabled: false, extra: Vec::new(), allow: None }
    }

    fn applies(&self, path: &str) -> bool {
        self.enabled && !self.allow.as_ref().is_some_and(|g| g.is_match(path))
    }

    /// The name rule `path` (repo-relative) matches, unless exempt.
    pub fn check_name(&self, path: &str) -> Option<String> {
        if !self.applies(path) {
            return None;
        }
        secret_in_name(path).map(String::from)
    }

    /// The content rule (built-in, then extra) the text of `path` matches, unless exempt.
    pub fn check_text(&self, path: &str, text: &str) -> Option<String> {
        if !self.applies(path) {
            return None;
        }
        if let Some(rule) = secret_in_text(text) {
            return Some(rule.to_string());
        }
        self.extra.iter().find(|(_, re)| re.is_match(text)).map(|(p, _)| format!("extra pattern {p:?}"))
    }
}

/// The fixtures of these tests (and of the walk's and the indexer's) spell secrets in pieces
/// (`concat!`, `format!`), so that this repository, indexed itself, keeps its test files.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `-----BEGIN <kind>PRIVATE KEY-----`, then `body`.
    fn key_block(kind: &str, body: &str) -> String {
        format!("-----BEGIN {kind}PRIVATE KEY-----\n{body}-----END {kind}PRIVATE KEY-----\n")
    }

    const BODY: &str = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n";
    /// AWS's documented example key pair, as in the issue.
    const KEY_ID: &str = concat!("AKIA", "IOSFODNN7EXAMPLE");
    const SECRET_KEY: &str = concat!("wJalrXUtnFEMI/K7MDENG", "/bPxRfiCYEXAMPLEKEY");

    /// The issue's two files: a private key in a `.txt` and an AWS key pair in Python settings.
    pub(crate) fn deploy_key() -> String {
        key_block(
            "OPENSSH ",
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
             QyNTUxOQAAACDfV3uJ2g8sZ1X0kq8mXb2k5fY3nE6pQ7wTzR1aL9cVxAAAAJgM1x3bDNcd\n",
        )
    }

    pub(crate) fn settings_py() -> String {
        format!("DEBUG = False\nAWS_ACCESS_KEY_ID = \"{KEY_ID}\"\nAWS_SECRET_ACCESS_KEY = \"{SECRET_KEY}\"\n")
    }

    #[test]
    fn the_issues_files_are_caught() {
        assert!(deploy_key().starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl"));
        assert_eq!(secret_in_text(&deploy_key()), Some("private key block"));
        assert_eq!(secret_in_text(&settings_py()), Some("AWS access key id"));
        let secret_only = format!("AWS_SECRET_ACCESS_KEY = \"{SECRET_KEY}\"\n");
        assert_eq!(secret_in_text(&secret_only), Some("AWS secret access key"));
        assert_eq!(secret_in_text(&format!("key_id = '{KEY_ID}'")), Some("AWS access key id"));
        // Neither file name says so: the content does.
        assert_eq!(secret_in_name("keys/deploy_key.txt"), None);
        assert_eq!(secret_in_name("config/settings.py"), None);
    }

    #[test]
    fn every_name_rule_matches_its_own_pattern_and_not_lookalikes() {
        for (pattern, rule) in NAME_RULES {
            let name = pattern.replace('*', "prod");
            assert_eq!(secret_in_name(&format!("deploy/{name}")), Some(*rule), "{pattern}");
            assert_eq!(secret_in_name(&name.to_ascii_uppercase()), Some(*rule), "{pattern} upper-cased");
        }
        for ok in [
            "src/keys.py",
            "id_rsa.rs",
            "src/environment.ts",
            "docs/credentials.md",
            "config/settings.py",
            "pem.go",
            "keyboard.key.rs",
            "src/tfstate.go",
            "secrets.py",
            "credentials_test.go",
        ] {
            assert_eq!(secret_in_name(ok), None, "{ok}");
        }
        assert_eq!(secret_in_name("a/b/.env.production"), Some("environment file"));
        assert_eq!(secret_in_name("certs/server.PEM"), Some("private key file"));
        assert_eq!(secret_in_name(".aws/credentials"), Some("credentials file"));
        assert_eq!(secret_in_name("infra/terraform.tfstate"), Some("Terraform state"));
    }

    #[test]
    fn private_key_blocks_of_every_kind_but_not_public_keys_or_parsers() {
        for kind in ["", "RSA ", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED ", "SSH2 ENCRYPTED "] {
            assert_eq!(secret_in_text(&key_block(kind, BODY)), Some("private key block"), "{kind}");
        }
        let pgp = format!("-----BEGIN PGP PRIVATE {}-----\nVersion: GnuPG v2\n\n{BODY}", "KEY BLOCK");
        assert_eq!(secret_in_text(&pgp), Some("private key block"));
        let encrypted =
            key_block("RSA ", &format!("Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\n{BODY}"));
        assert_eq!(secret_in_text(&encrypted), Some("private key block"));
        // A service-account JSON file: the key inside a string, its newlines escaped.
        let json = format!(
            concat!(
                r#"{{"type": "service_account", "private_key": "-----BEGIN {}-----\n"#,
                r#"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"}}"#
            ),
            "PRIVATE KEY"
        );
        assert_eq!(secret_in_text(&json), Some("private key block"));
        // Not keys: a README about public keys, a parser that names the header, a certificate.
        let readme = "Put the server's key in `server.pub`:\n\n```\n-----BEGIN PUBLIC KEY-----\n\
            MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n-----END PUBLIC KEY-----\n```\n";
        assert_eq!(secret_in_text(readme), None);
        let parser = "const HEADER: &str = \"-----BEGIN RSA PRIVATE KEY-----\";\n\
            if line.starts_with(\"-----BEGIN PRIVATE KEY-----\") {\n    return parse(lines);\n}\n";
        assert_eq!(secret_in_text(parser), None);
        let cert = format!("-----BEGIN CERTIFICATE-----\n{BODY}-----END CERTIFICATE-----\n");
        assert_eq!(secret_in_text(&cert), None);
    }

    #[test]
    fn aws_keys() {
        let session = concat!("export AWS_ACCESS_KEY_ID=AS", "IAY34FZKBOKMUTVV7A");
        assert_eq!(secret_in_text(session), Some("AWS access key id"));
        assert_eq!(secret_in_text(&format!("id = {}", &KEY_ID[..19])), None, "15 characters after the prefix");
        assert_eq!(secret_in_text(&format!("name = '{KEY_ID}XYZ'")), None, "longer than a key id");
        assert_eq!(secret_in_text(&KEY_ID.to_ascii_lowercase().replace("akia", "AKIA")), None, "lower case");
        for ok in [
            format!("aws_secret_access_key = {SECRET_KEY}\n"),
            format!("awsSecretKey: \"{SECRET_KEY}\""),
            format!("{{\"AwsSecret\": \"{SECRET_KEY}\"}}"),
            format!("SECRET_AWS_KEY := '{SECRET_KEY}'"),
        ] {
            assert_eq!(secret_in_text(&ok), Some("AWS secret access key"), "{ok}");
        }
        for not in [
            "aws_secret_access_key = os.environ[\"AWS_SECRET_ACCESS_KEY\"]".to_string(),
            "AWS_SECRET_ACCESS_KEY = ${AWS_SECRET_ACCESS_KEY}".to_string(),
            format!("aws_secret_access_key = {SECRET_KEY}X"),
            format!("secret = \"{SECRET_KEY}\""),
        ] {
            assert_ne!(secret_in_text(&not), Some("AWS secret access key"), "{not}");
        }
    }

    #[test]
    fn tokens_of_github_slack_google_and_stripe() {
        let cases = [
            (concat!("token = gh", "p_wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx"), "GitHub token"),
            (concat!("GH_TOKEN=gh", "o_16C7e42F292c6912E7710c838347Ae178B4a"), "GitHub token"),
            (
                concat!(
                    "github",
                    "_pat_11ABCDEFG0123456789abc_abcdefghijklmnopqrstuvwxyz",
                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456"
                ),
                "GitHub token",
            ),
            (concat!("SLACK = 'xo", "xb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy'"), "Slack token"),
            (
                concat!("url = \"https://hooks.slack.com/services/", "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX\""),
                "Slack webhook URL",
            ),
            (concat!("const key = \"AI", "zaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe\";"), "Google API key"),
            (concat!("stripe.api_key = 'sk", "_live_4eC39HqLyjWDarjtT1zdp7dc'"), "Stripe live key"),
        ];
        for (text, rule) in cases {
            assert_eq!(secret_in_text(text), Some(rule), "{text}");
        }
        for not in [
            "ghp_ is the prefix of a personal access token",
            "ghp_wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0p",
            "SLACK_TOKEN = 'xoxb-your-token-here'",
            "AIza followed by 35 characters is a Google API key",
            "stripe.api_key = 'sk_test_4eC39HqLyjWDarjtT1zdp7dc'",
        ] {
            assert_eq!(secret_in_text(not), None, "{not}");
        }
    }

    #[test]
    fn hard_coded_credentials_but_not_names_placeholders_or_lookups() {
        for text in [
            concat!("db_password = \"Xk29f", "Lq0Zr7mWp3s\""),
            concat!("API_TOKEN: 'q8Zr3LmX2", "vNp7Wt4Ks9d'"),
            concat!("const apiKey = \"7c9e6679f4a3b8d2", "e1c0a9b8f7e6d5c4\";"),
            concat!("SECRET_KEY = r'k2#Jf9!x", "Q7mZp4Lw'"),
            concat!("client_secret := \"Vb7-Qx2_", "Lm9-Zt4_Kp1\""),
            concat!("{\"password\": \"Tr0ub4dor", "&3-Horse\"}"),
        ] {
            assert_eq!(secret_in_text(text), Some(HARD_CODED_CREDENTIAL), "{text}");
        }
        for text in [
            // Ordinary code about passwords and tokens.
            "def check_password(password, token):\n    return hmac.compare_digest(hash(password), token)\n",
            "password = request.form[\"password\"]\ntoken = session.get(\"token\")\n",
            "api_key = os.environ[\"X\"]\n",
            "api_key = os.getenv(\"OPENAI_API_KEY_2024\")\n",
            "let token = tokens.next().ok_or(Error::UnexpectedEnd)?;\n",
            "PASSWORD_MIN_LENGTH = 16\n",
            "password_field = \"password_confirmation\"\n",
            "tokenizer_name = \"sentence-transformers/all-MiniLM-L6-v2\"\n",
            "TOKEN_URL = \"https://oauth2.googleapis.com/token\"\n",
            // Placeholders and templates.
            "password = \"changeme-please-123\"\n",
            "api_key = \"YOUR_API_KEY_HERE_1\"\n",
            "secret = \"xxxxxxxxxxxxxxxx1A\"\n",
            "token = \"<paste-token-here-2024>\"\n",
            "password: \"${DB_PASSWORD_2024}\"\n",
            "password = \"{{ vault_db_password_1 }}\"\n",
            "auth_key = \"test-auth-key-1234567\"\n",
            // Short, or of too few character classes.
            "password = \"hunter2\"\n",
            "token = \"abcdefghijklmnopqrstuvwxyz\"\n",
            "token = \"12345678901234567890\"\n",
        ] {
            assert_eq!(secret_in_text(text), None, "{text}");
        }
    }

    #[test]
    fn a_policy_adds_patterns_exempts_paths_and_can_be_off() {
        let p = SecretPolicy::new(true, &["INTERNAL-[0-9]{6}".into()], &["tests/fixtures/**".into()]).unwrap();
        let extra = p.check_text("src/a.py", "k = 'INTERNAL-123456'");
        assert_eq!(extra.as_deref(), Some("extra pattern \"INTERNAL-[0-9]{6}\""));
        assert_eq!(p.check_text("src/a.py", &settings_py()).as_deref(), Some("AWS access key id"));
        assert_eq!(p.check_text("tests/fixtures/settings.py", &settings_py()), None);
        assert_eq!(p.check_name("tests/fixtures/server.pem"), None);
        assert_eq!(p.check_name("deploy/server.pem").as_deref(), Some("private key file"));
        assert_eq!(SecretPolicy::off().check_text("a.py", &deploy_key()), None);
        assert_eq!(SecretPolicy::off().check_name("id_rsa"), None);
        let default = SecretPolicy::default().check_text("keys/deploy_key.txt", &deploy_key());
        assert_eq!(default.as_deref(), Some("private key block"));
        let err = SecretPolicy::new(true, &["(unclosed".into()], &[]).unwrap_err();
        assert!(err.contains("(unclosed"), "{err}");
        let err = SecretPolicy::new(true, &[], &["a/[".into()]).unwrap_err();
        assert!(err.contains("a/["), "{err}");
    }
}
