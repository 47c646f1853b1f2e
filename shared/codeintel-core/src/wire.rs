//! A chunk as Arrow columns: the schema of every Parquet segment and of every Flight batch that
//! hydrate-svc serves, and the decoding of those batches back into [`Chunk`]s that answer-svc
//! applies. Both sides use this module, so the column set is defined once.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListBuilder, RecordBatch, StringArray, StringBuilder, StructBuilder,
    UInt32Array, UInt32Builder, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, UInt32Type, UInt64Type};

use crate::chunk::Chunk;

/// The columns of a chunk row, in order, with their Arrow types.
pub const COLUMNS: [(&str, DataType); 9] = [
    ("chunk_id", DataType::UInt64),
    ("repo", DataType::Utf8),
    ("path", DataType::Utf8),
    ("language", DataType::Utf8),
    ("start_line", DataType::UInt32),
    ("end_line", DataType::UInt32),
    ("symbol", DataType::Utf8),
    ("kind", DataType::Utf8),
    ("text", DataType::Utf8),
];

/// The column names, comma-separated, for SQL projections over segments.
pub fn column_list() -> String {
    COLUMNS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// The stored columns of a chunk row, in order (a segment adds [`REFS_COLUMN`], a Flight
/// batch [`SERVED_COLUMNS`]).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(COLUMNS.iter().map(|(n, t)| Field::new(*n, t.clone(), false)).collect::<Vec<_>>()))
}

/// What hydration adds to each row it serves: the git commit of the version it came from, and
/// whether its file on disk no longer has the indexed content (see [`Chunk::commit`],
/// [`Chunk::stale`]). Never stored in a segment.
pub const SERVED_COLUMNS: [(&str, DataType); 2] = [("commit", DataType::Utf8), ("stale", DataType::Boolean)];

/// The schema of every Flight batch hydrate-svc serves: [`schema`], then [`SERVED_COLUMNS`].
pub fn served_schema() -> SchemaRef {
    let mut fields: Vec<Field> = schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(SERVED_COLUMNS.iter().map(|(n, t)| Field::new(*n, t.clone(), false)));
    Arc::new(Schema::new(fields))
}

/// A batch holding [`schema`]'s columns (in any order and string or integer width DuckDB
/// returns them, maybe with more columns) as a batch of exactly [`schema`].
pub fn conform(b: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(COLUMNS.len());
    for (name, t) in COLUMNS.iter() {
        let c = b
            .column_by_name(name)
            .ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("chunk batch has no column {name}")))?;
        cols.push(arrow::compute::cast(c, t)?);
    }
    RecordBatch::try_new(schema(), cols)
}

/// A batch of [`schema`]'s columns (in any order DuckDB returns them) as a batch of
/// [`served_schema`]: every row from the version at `commit`, `stale[i]` for row `i`.
pub fn with_served(b: &RecordBatch, commit: &str, stale: Vec<bool>) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut cols = conform(b)?.columns().to_vec();
    cols.push(Arc::new(StringArray::from_iter_values(std::iter::repeat_n(commit, b.num_rows()))));
    cols.push(Arc::new(BooleanArray::from(stale)));
    RecordBatch::try_new(served_schema(), cols)
}

/// The fields of one entry of a segment's `refs` column (see [`crate::chunk::Reference`]).
pub fn ref_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("line", DataType::UInt32, false),
        Field::new("qualifier", DataType::Utf8, false),
    ])
}

/// A segment's `refs` column: per chunk, the names it uses.
pub const REFS_COLUMN: &str = "refs";

fn refs_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Struct(ref_fields()), true)))
}

/// The schema of a Parquet segment: [`schema`]'s columns, then [`REFS_COLUMN`]. Flight batches
/// carry [`schema`] only; the references are read through their own queries.
pub fn segment_schema() -> SchemaRef {
    let mut fields: Vec<Field> = schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(REFS_COLUMN, refs_type(), false));
    Arc::new(Schema::new(fields))
}

/// `chunks` as one batch of [`segment_schema`], references included.
pub fn to_segment_batch(chunks: &[Chunk]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let base = to_batch(chunks)?;
    let mut refs = ListBuilder::new(StructBuilder::from_fields(ref_fields(), 0)).with_field(Arc::new(Field::new(
        "item",
        DataType::Struct(ref_fields()),
        true,
    )));
    for c in chunks {
        let entries = refs.values();
        for r in &c.refs {
            entries.field_builder::<StringBuilder>(0).expect("name").append_value(&r.name);
            entries.field_builder::<StringBuilder>(1).expect("kind").append_value(&r.kind);
            entries.field_builder::<UInt32Builder>(2).expect("line").append_value(r.line);
            entries.field_builder::<StringBuilder>(3).expect("qualifier").append_value(&r.qualifier);
            entries.append(true);
        }
        refs.append(true);
    }
    let mut cols = base.columns().to_vec();
    cols.push(Arc::new(refs.finish()) as ArrayRef);
    RecordBatch::try_new(segment_schema(), cols)
}

/// `chunks` as one batch of [`schema`].
pub fn to_batch(chunks: &[Chunk]) -> Result<RecordBatch, arrow::error::ArrowError> {
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
    RecordBatch::try_new(schema(), cols)
}

/// Rows of a batch of [`schema`]'s columns as chunks, by column name (string columns may arrive
/// as Utf8, LargeUtf8 or Utf8View, integers widened or narrowed as DuckDB returns them).
/// Segments store the columns of [`COLUMNS`] only: a decoded chunk's `parent`, `signature`,
/// `members` and `content_hash` are empty (indexing kept what it needed of them in the lexical
/// and vector artifacts).
pub fn decode(b: &RecordBatch) -> Result<Vec<Chunk>, String> {
    let col = |name: &str| b.column_by_name(name).ok_or_else(|| format!("chunk batch has no column {name}"));
    let strings = |name: &str| -> Result<Vec<String>, String> {
        let a = arrow::compute::cast(col(name)?, &DataType::Utf8).map_err(|e| e.to_string())?;
        let s = a.as_string::<i32>();
        Ok((0..s.len()).map(|i| if s.is_null(i) { String::new() } else { s.value(i).to_string() }).collect())
    };
    let u32s = |name: &str| -> Result<Vec<u32>, String> {
        let a = arrow::compute::cast(col(name)?, &DataType::UInt32).map_err(|e| e.to_string())?;
        Ok(a.as_primitive::<UInt32Type>().values().to_vec())
    };
    let ids = arrow::compute::cast(col("chunk_id")?, &DataType::UInt64).map_err(|e| e.to_string())?;
    let ids = ids.as_primitive::<UInt64Type>().values().to_vec();
    let (repo, path, language, symbol, kind, text) = (
        strings("repo")?,
        strings("path")?,
        strings("language")?,
        strings("symbol")?,
        strings("kind")?,
        strings("text")?,
    );
    let (start, end) = (u32s("start_line")?, u32s("end_line")?);
    // Served columns: absent from a segment's rows and from an older hydrate-svc's batches.
    let commit = match b.column_by_name("commit") {
        Some(_) => strings("commit")?,
        None => vec![String::new(); ids.len()],
    };
    let stale: Vec<bool> = match b.column_by_name("stale") {
        Some(c) => {
            let c = c.as_boolean_opt().ok_or("chunk batch column stale is not boolean")?;
            (0..c.len()).map(|i| c.is_valid(i) && c.value(i)).collect()
        }
        None => vec![false; ids.len()],
    };
    Ok((0..ids.len())
        .map(|i| Chunk {
            chunk_id: ids[i],
            repo: repo[i].clone(),
            path: path[i].clone(),
            language: language[i].clone(),
            start_line: start[i],
            end_line: end[i],
            symbol: symbol[i].clone(),
            kind: kind[i].clone(),
            text: text[i].clone(),
            commit: commit[i].clone(),
            stale: stale[i],
            ..Chunk::default()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: u64) -> Chunk {
        Chunk {
            chunk_id: id,
            repo: "r".into(),
            path: format!("src/f{id}.rs"),
            language: "rust".into(),
            start_line: 3,
            end_line: 9,
            symbol: "S::f".into(),
            kind: "method".into(),
            parent: "S".into(),
            signature: "fn f()".into(),
            members: String::new(),
            content_hash: "h".into(),
            text: "fn f() {}".into(),
            refs: vec![crate::chunk::Reference {
                name: "g".into(),
                kind: "call".into(),
                line: 3,
                qualifier: "self".into(),
            }],
            ..Chunk::default()
        }
    }

    #[test]
    fn a_segment_batch_carries_each_chunks_references() {
        let mut none = chunk(2);
        none.refs.clear();
        let b = to_segment_batch(&[chunk(1), none]).unwrap();
        assert_eq!(b.schema(), segment_schema());
        let refs = b.column_by_name(REFS_COLUMN).unwrap().as_list::<i32>();
        assert_eq!((refs.value_length(0), refs.value_length(1)), (1, 0));
        let first = refs.value(0);
        let entry = first.as_struct();
        assert_eq!(entry.column_by_name("name").unwrap().as_string::<i32>().value(0), "g");
        assert_eq!(entry.column_by_name("qualifier").unwrap().as_string::<i32>().value(0), "self");
        assert_eq!(entry.column_by_name("line").unwrap().as_primitive::<UInt32Type>().value(0), 3);
        // Hydration still decodes a segment batch (the extra column is ignored).
        assert_eq!(decode(&b).unwrap()[0].path, "src/f1.rs");
    }

    #[test]
    fn a_batch_decodes_to_the_chunks_it_was_built_from() {
        let chunks = [chunk(1), chunk(2)];
        let got = decode(&to_batch(&chunks).unwrap()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].chunk_id, 2);
        assert_eq!(got[1].path, "src/f2.rs");
        assert_eq!((got[0].start_line, got[0].end_line), (3, 9));
        assert_eq!(got[0].kind, "method");
        assert_eq!(column_list(), "chunk_id, repo, path, language, start_line, end_line, symbol, kind, text");
    }

    #[test]
    fn a_batch_without_a_column_is_refused_by_name() {
        let b = to_batch(&[chunk(1)]).unwrap();
        let b = b.project(&[0, 1, 2, 3, 4, 5, 6, 8]).unwrap();
        assert!(decode(&b).unwrap_err().contains("no column kind"));
    }

    #[test]
    fn a_served_batch_carries_the_commit_and_the_stale_flag_of_each_row() {
        let b = with_served(&to_batch(&[chunk(1), chunk(2)]).unwrap(), "abc123", vec![false, true]).unwrap();
        assert_eq!(b.schema(), served_schema());
        let got = decode(&b).unwrap();
        assert_eq!((got[0].commit.as_str(), got[0].stale), ("abc123", false));
        assert_eq!((got[1].commit.as_str(), got[1].stale), ("abc123", true));
        assert_eq!(got[1].path, "src/f2.rs", "the stored columns are unchanged");
        // Rows without them (a segment, an older server): no commit, not stale.
        let plain = decode(&to_batch(&[chunk(1)]).unwrap()).unwrap();
        assert_eq!((plain[0].commit.as_str(), plain[0].stale), ("", false));
    }
}
