//! Chunk segments: Parquet files of [`codeintel_core::wire::schema`], one row per chunk. A
//! version lists its segments oldest first; hydrate-svc reads them through DuckDB.

use std::path::Path;

use arrow::array::UInt64Array;
use codeintel_core::chunk::Chunk;
use codeintel_core::wire::{segment_schema, to_segment_batch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::IndexError;

/// Writes `<repo_dir>/segments/<version>.parquet` (fsynced); returns its repo-relative path.
pub fn write_segment(repo_dir: &Path, version: &str, chunks: &[Chunk]) -> Result<String, IndexError> {
    let rel = format!("segments/{version}.parquet");
    let path = repo_dir.join(&rel);
    let at = |e: &dyn std::fmt::Display| IndexError::Segment(format!("{}: {e}", path.display()));
    crate::manifest::create_private_dir_all(path.parent().expect("has parent")).map_err(|e| at(&e))?;
    let file = crate::manifest::create_private_file(&path).map_err(|e| at(&e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(8192))
        .build();
    let mut w = ArrowWriter::try_new(file, segment_schema(), Some(props)).map_err(|e| at(&e))?;
    for part in chunks.chunks(8192) {
        w.write(&to_segment_batch(part).map_err(|e| IndexError::Segment(e.to_string()))?).map_err(|e| at(&e))?;
    }
    let file = w.into_inner().map_err(|e| at(&e))?;
    file.sync_all().map_err(|e| at(&e))?;
    Ok(rel)
}

/// Compaction: one new segment `segments/<version>.parquet` with every row of `segments` whose
/// chunk id is not in `dead`, each chunk id once. Returns its repo-relative path and row count.
/// The new segment has the columns of the first (a version's segments share one chunk format:
/// a change of format rebuilds the repo).
pub fn compact_segments(
    repo_dir: &Path,
    segments: &[String],
    dead: &std::collections::HashSet<u64>,
    version: &str,
) -> Result<(String, u64), IndexError> {
    let rel = format!("segments/{version}.parquet");
    let path = repo_dir.join(&rel);
    let internal = |e: &dyn std::fmt::Display| IndexError::Segment(format!("{}: {e}", path.display()));
    let file = crate::manifest::create_private_file(&path).map_err(|e| internal(&e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(8192))
        .build();
    let mut w: Option<(ArrowWriter<std::fs::File>, arrow::datatypes::SchemaRef)> = None;
    let mut file = Some(file);
    let mut seen = std::collections::HashSet::new();
    let mut rows = 0u64;
    for seg in segments {
        let src = repo_dir.join(seg);
        let f = std::fs::File::open(&src).map_err(|e| internal(&e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| internal(&e))?;
        let seg_schema = builder.schema().clone();
        let (w, _) = match &mut w {
            Some((_, first)) if first.fields() != seg_schema.fields() => {
                return Err(IndexError::Segment(format!(
                    "{}: its columns differ from the other segments' of this version; run `codeintel index` to rebuild",
                    src.display()
                )))
            }
            Some(w) => w,
            None => w.insert((
                ArrowWriter::try_new(file.take().expect("one writer"), seg_schema.clone(), Some(props.clone()))
                    .map_err(|e| internal(&e))?,
                seg_schema,
            )),
        };
        let reader = builder.build().map_err(|e| internal(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| internal(&e))?;
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| IndexError::Segment(format!("{seg}: chunk_id is not UInt64")))?;
            let mask: arrow::array::BooleanArray =
                ids.iter().map(|id| id.map(|id| !dead.contains(&id) && seen.insert(id))).collect();
            let kept = arrow::compute::filter_record_batch(&batch, &mask).map_err(|e| internal(&e))?;
            rows += kept.num_rows() as u64;
            if kept.num_rows() > 0 {
                w.write(&kept).map_err(|e| internal(&e))?;
            }
        }
    }
    let file = match w {
        Some((w, _)) => w.into_inner().map_err(|e| internal(&e))?,
        // No segments: an empty one of today's columns.
        None => ArrowWriter::try_new(file.take().expect("unused"), segment_schema(), Some(props))
            .and_then(|w| w.into_inner())
            .map_err(|e| internal(&e))?,
    };
    file.sync_all().map_err(|e| internal(&e))?;
    Ok((rel, rows))
}
