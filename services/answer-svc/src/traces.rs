//! AnswerTrace rows in Parquet: one row per answered request (what was asked, how it was routed
//! and reranked, what was cited, each stage's time, what was lost), written in batches by a
//! background task to `<answer.trace_dir>/answers-<unix ms>-<pid>-<seq>.parquet`, for offline
//! analysis with DuckDB or any Parquet reader.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Float64Array, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use codeintel_core::proto::v1::{Limit, Trace};
use parquet::arrow::ArrowWriter;
use tokio::sync::mpsc;

/// One answered request.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRow {
    pub unix_ms: u64,
    pub query: String,
    pub top_k: u32,
    pub trace: Trace,
    pub limits: Vec<Limit>,
    pub cited: Vec<u64>,
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("unix_ms", DataType::UInt64, false),
        Field::new("query", DataType::Utf8, false),
        Field::new("top_k", DataType::UInt32, false),
        Field::new("route", DataType::Utf8, false),
        Field::new("reranker", DataType::Utf8, false),
        Field::new("synthesizer", DataType::Utf8, false),
        Field::new("total_ms", DataType::Float64, false),
        Field::new("ttft_ms", DataType::Float64, false),
        Field::new("tokens_in", DataType::UInt32, false),
        Field::new("tokens_out", DataType::UInt32, false),
        // JSON: [{"stage","ms"}], [{"retriever","hits","in_top_k","ms","timed_out"}],
        // [{"code","message"}], [chunk ids], [{"chunk_id","before","after","score"}].
        Field::new("stages", DataType::Utf8, false),
        Field::new("retrievers", DataType::Utf8, false),
        Field::new("limits", DataType::Utf8, false),
        Field::new("cited", DataType::Utf8, false),
        Field::new("ranks", DataType::Utf8, false),
    ]))
}

pub fn to_batch(rows: &[TraceRow]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let s = |f: &dyn Fn(&TraceRow) -> String| Arc::new(StringArray::from_iter_values(rows.iter().map(f))) as ArrayRef;
    let json = |v: serde_json::Value| v.to_string();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.unix_ms))),
        s(&|r| r.query.clone()),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.top_k))),
        s(&|r| r.trace.route.clone()),
        s(&|r| r.trace.reranker.clone()),
        s(&|r| r.trace.synthesizer.clone()),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.trace.total_ms))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.trace.ttft_ms))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.trace.tokens_in))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.trace.tokens_out))),
        s(&|r| {
            json(serde_json::Value::Array(
                r.trace.stages.iter().map(|st| serde_json::json!({"stage": st.stage, "ms": st.ms})).collect(),
            ))
        }),
        s(&|r| {
            json(serde_json::Value::Array(
                r.trace
                    .retrievers
                    .iter()
                    .map(|x| {
                        serde_json::json!({"retriever": x.retriever, "hits": x.hits, "in_top_k": x.in_top_k,
                                       "ms": x.ms, "timed_out": x.timed_out})
                    })
                    .collect(),
            ))
        }),
        s(&|r| {
            json(serde_json::Value::Array(
                r.limits.iter().map(|l| serde_json::json!({"code": l.code, "message": l.message})).collect(),
            ))
        }),
        s(&|r| json(serde_json::json!(r.cited))),
        s(&|r| {
            json(serde_json::Value::Array(
                r.trace
                    .ranks
                    .iter()
                    .map(|m| {
                        serde_json::json!({"chunk_id": m.chunk_id, "before": m.before, "after": m.after,
                                              "score": m.rerank_score})
                    })
                    .collect(),
            ))
        }),
    ];
    RecordBatch::try_new(schema(), cols)
}

/// Writes one file of `rows` under `dir`. Every query asked is in it: the file is private to this
/// user (0600), and so is each folder created for it (0700).
fn write_file(dir: &Path, rows: &[TraceRow]) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // Two files can be written within one millisecond: a sequence number keeps names unique.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("answers-{}-{}-{seq:06}.parquet", codeintel_core::now_unix_ms(), std::process::id());
    let tmp = dir.join(format!(".{name}.tmp"));
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    let mut w = ArrowWriter::try_new(file, schema(), None)?;
    w.write(&to_batch(rows)?)?;
    w.into_inner()?.sync_all()?;
    // Readers globbing `*.parquet` never see a half-written file.
    let path = dir.join(name);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Where answered requests go; cheap to clone. Rows are dropped (and counted in the log) when
/// the writer falls behind by more than a few thousand rows.
#[derive(Clone)]
pub struct TraceSink {
    tx: mpsc::Sender<Msg>,
}

enum Msg {
    Row(Box<TraceRow>),
    /// Write what is pending now and say when it is on disk.
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl TraceSink {
    /// Starts the writer task: a file every `batch_rows` rows or `flush` interval, whichever
    /// comes first (and on shutdown, when every sink is dropped).
    pub fn start(dir: PathBuf, batch_rows: usize, flush: Duration) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Msg>(4096);
        let task = tokio::spawn(async move {
            let mut rows = Vec::new();
            let mut tick = tokio::time::interval(flush);
            tick.tick().await;
            loop {
                let mut ack = None;
                let (flush_now, done) = tokio::select! {
                    r = rx.recv() => match r {
                        Some(Msg::Row(row)) => {
                            rows.push(*row);
                            (rows.len() >= batch_rows.max(1), false)
                        }
                        Some(Msg::Flush(tx)) => {
                            ack = Some(tx);
                            (true, false)
                        }
                        None => (true, true),
                    },
                    _ = tick.tick() => (true, false),
                };
                if flush_now && !rows.is_empty() {
                    let batch = std::mem::take(&mut rows);
                    let d = dir.clone();
                    match tokio::task::spawn_blocking(move || write_file(&d, &batch)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!(error = %e, "answer traces could not be written"),
                        Err(e) => tracing::warn!(error = %e, "answer trace writer failed"),
                    }
                }
                if let Some(a) = ack {
                    let _ = a.send(());
                }
                if done {
                    return;
                }
            }
        });
        (Self { tx }, task)
    }

    pub fn record(&self, row: TraceRow) {
        if self.tx.try_send(Msg::Row(Box::new(row))).is_err() {
            tracing::warn!("answer trace dropped: the trace writer is behind");
        }
    }

    /// Writes every pending row now (at shutdown).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;
    use codeintel_core::proto::v1::{RankMove, StageTiming};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn row(q: &str) -> TraceRow {
        TraceRow {
            unix_ms: 1,
            query: q.into(),
            top_k: 3,
            trace: Trace {
                stages: vec![StageTiming { stage: "retrieve".into(), ms: 12.5 }],
                total_ms: 40.0,
                route: "natural_language".into(),
                reranker: "fusion".into(),
                ranks: vec![RankMove { chunk_id: 9, before: 2, after: 1, rerank_score: 0.5 }],
                ..Default::default()
            },
            limits: vec![Limit { code: "extractive".into(), message: "no model".into() }],
            cited: vec![9, 4],
        }
    }

    fn read_all(dir: &Path) -> Vec<RecordBatch> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        files.sort();
        files
            .iter()
            .flat_map(|f| {
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
                    .unwrap()
                    .build()
                    .unwrap()
                    .map(|b| b.unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn rows_reach_parquet_in_batches_and_on_shutdown() {
        let d = tempfile::tempdir().unwrap();
        let (sink, task) = TraceSink::start(d.path().to_path_buf(), 2, Duration::from_secs(3600));
        for q in ["a", "b", "c"] {
            sink.record(row(q));
        }
        drop(sink);
        task.await.unwrap();
        let batches = read_all(d.path());
        assert_eq!(batches.len(), 2, "one full batch of 2, then the rest at shutdown");
        let queries: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let a = b.column_by_name("query").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
                (0..a.len()).map(move |i| a.value(i).to_string())
            })
            .collect();
        assert_eq!(queries, ["a", "b", "c"]);
        let b = &batches[0];
        let col =
            |n: &str| b.column_by_name(n).unwrap().as_any().downcast_ref::<StringArray>().unwrap().value(0).to_string();
        assert_eq!(col("cited"), "[9,4]");
        assert!(col("stages").contains("\"retrieve\"") && col("limits").contains("extractive"));
        assert!(col("ranks").contains("\"before\":2"));
    }

    #[test]
    fn trace_files_and_the_folders_made_for_them_are_private() {
        use std::os::unix::fs::PermissionsExt;
        fn mode(p: &Path) -> u32 {
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        }
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data").join("traces");
        let path = write_file(&dir, &[row("what is the admin password?")]).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!((mode(&dir), mode(&d.path().join("data"))), (0o700, 0o700));
    }

    #[tokio::test]
    async fn flush_writes_pending_rows_at_once() {
        let d = tempfile::tempdir().unwrap();
        let (sink, _task) = TraceSink::start(d.path().to_path_buf(), 1000, Duration::from_secs(3600));
        sink.record(row("q"));
        sink.flush().await;
        assert_eq!(read_all(d.path())[0].num_rows(), 1);
    }

    #[tokio::test]
    async fn a_quiet_writer_flushes_on_its_interval() {
        let d = tempfile::tempdir().unwrap();
        let (sink, _task) = TraceSink::start(d.path().to_path_buf(), 1000, Duration::from_millis(50));
        sink.record(row("x"));
        let t = std::time::Instant::now();
        while read_all(d.path()).is_empty() {
            assert!(t.elapsed() < Duration::from_secs(5), "no file after the flush interval");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(read_all(d.path())[0].num_rows(), 1);
    }
}
