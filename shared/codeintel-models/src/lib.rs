//! The models CodeIntel runs on the CPU, loaded from local files that packages ship: the
//! sentence [`embed`]der (candle, or a remote `/v1/embeddings` server), the SPLADE [`sparse`]
//! encoder, and the local [`chat`] model (SmolLM2 GGUF) behind `codeintel models serve`.

pub mod chat;
pub mod embed;
pub mod sparse;
