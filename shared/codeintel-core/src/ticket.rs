//! The Arrow Flight ticket hydrate-svc accepts: chunk ids plus a scope filter, as JSON.

use serde::{Deserialize, Serialize};

use codeintel_proto::v1::Scope;

pub const MAX_TICKET_IDS: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HydrateTicket {
    pub chunk_ids: Vec<u64>,
    pub repos: Vec<String>,
    pub include_globs: Vec<String>,
    pub exclude_globs: Vec<String>,
    pub languages: Vec<String>,
}

impl HydrateTicket {
    pub fn new(chunk_ids: Vec<u64>, scope: Option<&Scope>) -> Self {
        let s = scope.cloned().unwrap_or_default();
        Self {
            chunk_ids,
            repos: s.repos,
            include_globs: s.include_globs,
            exclude_globs: s.exclude_globs,
            languages: s.languages,
        }
    }

    pub fn scope(&self) -> Scope {
        Scope {
            repos: self.repos.clone(),
            include_globs: self.include_globs.clone(),
            exclude_globs: self.exclude_globs.clone(),
            languages: self.languages.clone(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("ticket serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| {
            format!("ticket is not valid JSON of the form {{\"chunk_ids\": [..], \"repos\": [..], \"include_globs\": [..], \"exclude_globs\": [..], \"languages\": [..]}}: {e}")
        })
    }
}
