//! Parquet chunk segments: one row per chunk, text and metadata.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use codeintel_core::chunk::Chunk;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::HydrateError;

/// Columns of a segment, in order; also the schema of every Flight batch.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("chunk_id", DataType::UInt64, false),
        Field::new("repo", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("language", DataType::Utf8, false),
        Field::new("start_line", DataType::UInt32, false),
        Field::new("end_line", DataType::UInt32, false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
    ]))
}

pub fn to_batch(chunks: &[Chunk]) -> Result<RecordBatch, HydrateError> {
    let s = |f: fn(&Chunk) -> &str| Arc::new(StringArray::from_iter_values(chunks.iter().map(f))) as ArrayRef;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(chunks.iter().map(|c| c.chunk_id))),
        s(|c| &c.repo),
        s(|c| &c.path),
        s(|c| &c.language),
        Arc::new(UInt32Array::from_iter_values(chunks.iter().map(|c| c.start_line))),
        Arc::new(UInt32Array::from_iter_values(chunks.iter().map(|c| c.end_line))),
        s(|c| &c.symbol),
        s(|c| &c.kind),
        s(|c| &c.text),
    ];
    RecordBatch::try_new(schema(), cols).map_err(|e| HydrateError::Internal(e.to_string()))
}

/// Writes `<repo_dir>/segments/<version>.parquet` (fsynced); returns its repo-relative path.
pub fn write_segment(repo_dir: &Path, version: &str, chunks: &[Chunk]) -> Result<String, HydrateError> {
    let rel = format!("segments/{version}.parquet");
    let path = repo_dir.join(&rel);
    let io = |e: std::io::Error| HydrateError::Internal(format!("{}: {e}", path.display()));
    std::fs::create_dir_all(path.parent().expect("has parent")).map_err(io)?;
    let file = std::fs::File::create(&path).map_err(io)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(8192))
        .build();
    let mut w = ArrowWriter::try_new(file, schema(), Some(props)).map_err(|e| HydrateError::Internal(e.to_string()))?;
    for part in chunks.chunks(8192) {
        w.write(&to_batch(part)?).map_err(|e| HydrateError::Internal(e.to_string()))?;
    }
    let file = w.into_inner().map_err(|e| HydrateError::Internal(e.to_string()))?;
    file.sync_all().map_err(io)?;
    Ok(rel)
}

/// Compaction: one new segment `segments/<version>.parquet` with every row of `segments` whose
/// chunk id is not in `dead`, each chunk id once. Returns its repo-relative path and row count.
pub fn compact_segments(
    repo_dir: &Path,
    segments: &[String],
    dead: &std::collections::HashSet<u64>,
    version: &str,
) -> Result<(String, u64), HydrateError> {
    let rel = format!("segments/{version}.parquet");
    let path = repo_dir.join(&rel);
    let internal = |e: &dyn std::fmt::Display| HydrateError::Internal(format!("{}: {e}", path.display()));
    let file = std::fs::File::create(&path).map_err(|e| internal(&e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(8192))
        .build();
    let mut w = ArrowWriter::try_new(file, schema(), Some(props)).map_err(|e| internal(&e))?;
    let mut seen = std::collections::HashSet::new();
    let mut rows = 0u64;
    for seg in segments {
        let src = repo_dir.join(seg);
        let f = std::fs::File::open(&src).map_err(|e| internal(&e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(f).and_then(|b| b.build()).map_err(|e| internal(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| internal(&e))?;
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| HydrateError::Internal(format!("{seg}: chunk_id is not UInt64")))?;
            let mask: arrow::array::BooleanArray =
                ids.iter().map(|id| id.map(|id| !dead.contains(&id) && seen.insert(id))).collect();
            let kept = arrow::compute::filter_record_batch(&batch, &mask).map_err(|e| internal(&e))?;
            rows += kept.num_rows() as u64;
            if kept.num_rows() > 0 {
                w.write(&kept).map_err(|e| internal(&e))?;
            }
        }
    }
    let file = w.into_inner().map_err(|e| internal(&e))?;
    file.sync_all().map_err(|e| internal(&e))?;
    Ok((rel, rows))
}
