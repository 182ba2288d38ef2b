//! Reader tests: small files written to a temporary directory, the raw
//! Adult and MIMIC files when present, and S3 through `moto_server` when
//! installed.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use tempfile::TempDir;

use super::*;

const ADULT_DATA: &str = "/work/shared/data/adult/adult.data";
const ADULT_TEST: &str = "/work/shared/data/adult/adult.test";
const MIMIC_ADMISSIONS: &str = "/work/shared/data/mimic_iv_demo/hosp/admissions.csv.gz";

fn write(dir: &TempDir, name: &str, content: &[u8]) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, content).expect("write test file");
    path.to_string_lossy().into_owned()
}

fn gzip(content: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(content).expect("gzip");
    encoder.finish().expect("gzip")
}

async fn read(input: &str, opts: &ReadOptions) -> (TableSource, RecordBatch) {
    let (source, batches) = read_all(input, opts)
        .await
        .unwrap_or_else(|e| panic!("reading {input}: {e}"));
    let batch = concat_batches(&source.schema(), &batches).expect("concat");
    (source, batch)
}

async fn read_default(input: &str) -> (TableSource, RecordBatch) {
    read(input, &ReadOptions::default()).await
}

async fn read_error(input: &str, opts: &ReadOptions) -> ReadError {
    match read_all(input, opts).await {
        Ok((source, _)) => panic!("{input} read without error: {}", source.describe()),
        Err(error) => error,
    }
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", batch.schema()))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| {
            panic!(
                "column {name} has type {:?}",
                batch.column_by_name(name).map(|c| c.data_type().clone())
            )
        })
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    column::<StringArray>(batch, name)
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

fn ints(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    column::<Int64Array>(batch, name).iter().collect()
}

fn names(source: &TableSource) -> Vec<String> {
    source
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

fn types(source: &TableSource) -> Vec<DataType> {
    source
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect()
}

fn file_of(error: &ReadError) -> String {
    error.to_string()
}

// ---- sniffing ------------------------------------------------------------

#[tokio::test]
async fn comma_file_with_header_and_types() {
    let dir = TempDir::new().expect("tempdir");
    let path = write(
        &dir,
        "people.csv",
        b"id,name,score,ok,born,seen\n\
          1,ann,1.5,true,2001-02-03,2020-01-01 10:00:00\n\
          2,,2,FALSE,NA,2020-01-01T10:00:00.5\n\
          3,cy,?,,1999-12-31,\n",
    );
    let (source, batch) = read_default(&path).await;
    assert_eq!(source.name(), "people");
    assert_eq!(
        names(&source),
        ["id", "name", "score", "ok", "born", "seen"]
    );
    assert_eq!(
        types(&source),
        [
            DataType::Int64,
            DataType::Utf8,
            DataType::Float64,
            DataType::Boolean,
            DataType::Date32,
            DataType::Timestamp(TimeUnit::Microsecond, None)
        ]
    );
    assert_eq!(ints(&batch, "id"), [Some(1), Some(2), Some(3)]);
    assert_eq!(
        strings(&batch, "name"),
        [Some("ann".into()), None, Some("cy".into())]
    );
    let score: Vec<_> = column::<Float64Array>(&batch, "score").iter().collect();
    assert_eq!(score, [Some(1.5), Some(2.0), None]);
    let ok: Vec<_> = column::<BooleanArray>(&batch, "ok").iter().collect();
    assert_eq!(ok, [Some(true), Some(false), None]);
    let born: Vec<_> = column::<Date32Array>(&batch, "born").iter().collect();
    assert_eq!(born, [Some(11_356), None, Some(10_956)]);
    let seen: Vec<_> = column::<TimestampMicrosecondArray>(&batch, "seen")
        .iter()
        .collect();
    assert_eq!(
        seen,
        [
            Some(1_577_872_800_000_000),
            Some(1_577_872_800_500_000),
            None
        ]
    );
    let dialect = source.dialect().expect("CSV has a dialect");
    assert_eq!(
        (
            dialect.delimiter,
            dialect.has_header,
            dialect.trim,
            dialect.preamble_lines
        ),
        (b',', true, false, 0)
    );
    assert_eq!(
        source.describe(),
        "people: CSV, delimiter ',', header, 6 columns"
    );
}

#[tokio::test]
async fn semicolon_pipe_and_tab_delimiters() {
    let dir = TempDir::new().expect("tempdir");
    for (name, delimiter, text) in [
        ("semi.csv", b';', "city;price\nBonn, DE;1,5\nParis;2\n"),
        ("pipe.txt", b'|', "city|n\nBonn|1\nParis|2\n"),
        ("tab.tsv", b'\t', "city\tn\nBonn, DE\t1\nParis\t2\n"),
    ] {
        let path = write(&dir, name, text.as_bytes());
        let (source, batch) = read_default(&path).await;
        let dialect = source.dialect().expect("CSV");
        assert_eq!(dialect.delimiter, delimiter, "{name}");
        assert!(dialect.has_header, "{name}");
        assert_eq!(batch.num_columns(), 2, "{name}");
        assert_eq!(batch.num_rows(), 2, "{name}");
        assert_eq!(strings(&batch, "city")[1], Some("Paris".into()), "{name}");
    }
}

#[tokio::test]
async fn headerless_file_gets_numbered_or_given_names() {
    let dir = TempDir::new().expect("tempdir");
    let path = write(&dir, "plain.csv", b"1,red,2.5\n2,blue,3\n3,red,4\n");
    let (source, batch) = read_default(&path).await;
    assert!(!source.dialect().expect("CSV").has_header);
    assert_eq!(names(&source), ["column_1", "column_2", "column_3"]);
    assert_eq!(ints(&batch, "column_1"), [Some(1), Some(2), Some(3)]);

    let opts = ReadOptions {
        column_names: Some(vec!["n".into(), " colour ".into(), "size".into()]),
        ..Default::default()
    };
    let (source, batch) = read(&path, &opts).await;
    assert_eq!(names(&source), ["n", "colour", "size"]);
    assert_eq!(strings(&batch, "colour")[2], Some("red".into()));

    let wrong = ReadOptions {
        column_names: Some(vec!["a".into()]),
        ..Default::default()
    };
    let error = read_error(&path, &wrong).await;
    assert!(matches!(error, ReadError::Columns { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("1 names but the table has 3 columns"),
        "{error}"
    );
}

#[tokio::test]
async fn byte_order_mark_is_dropped() {
    let dir = TempDir::new().expect("tempdir");
    let path = write(&dir, "bom.csv", b"\xef\xbb\xbfid,name\n1,a\n2,b\n");
    let (source, batch) = read_default(&path).await;
    assert_eq!(names(&source), ["id", "name"]);
    assert_eq!(ints(&batch, "id"), [Some(1), Some(2)]);
    let path = write(&dir, "bom.csv.gz", &gzip(b"\xef\xbb\xbf7,a\n8,b\n"));
    let (_, batch) = read_default(&path).await;
    assert_eq!(ints(&batch, "column_1"), [Some(7), Some(8)]);
}

#[test]
fn table_source_can_be_shared_across_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<TableSource>();
    shareable::<ReadError>();
}

#[test]
fn table_names_drop_format_suffixes() {
    assert_eq!(table_name("adult.csv.gz"), "adult");
    assert_eq!(table_name("adult.data"), "adult");
    assert_eq!(table_name("admissions/"), "admissions");
    assert_eq!(table_name("part-0.parquet"), "part-0");
    assert_eq!(table_name("x.v2.csv"), "x.v2");
    assert_eq!(table_name(".csv"), ".csv");
    assert_eq!(format_from_name("A.PQ"), Some(Format::Parquet));
    assert_eq!(format_from_name("notes.tsv"), Some(Format::Csv));
    assert_eq!(format_from_name("blob"), None);
}

#[tokio::test]
async fn header_names_are_trimmed_and_made_unique() {
    let dir = TempDir::new().expect("tempdir");
    let path = write(&dir, "dup.csv", b" a , a,,b\n1,2,3,x\n4,5,6,y\n");
    let (source, _) = read_default(&path).await;
    assert_eq!(names(&source), ["a", "a_2", "column_3", "b"]);
}

#[tokio::test]
async fn padded_separators_are_trimmed() {
    let dir = TempDir::new().expect("tempdir");
    let path = write(
        &dir,
        "adultish.data",
        b"39, State-gov, 77516\n50, ?, 83311\n38, Private, 215646\n\n",
    );
    let (source, batch) = read_default(&path).await;
    let dialect = source.dialect().expect("CSV");
    assert!(dialect.trim && !dialect.has_header);
    assert_eq!(source.name(), "adultish");
    assert_eq!(
        strings(&batch, "column_2"),
        [Some("State-gov".into()), None, Some("Private".into())]
    );
    assert_eq!(
        ints(&batch, "column_3"),
        [Some(77_516), Some(83_311), Some(215_646)]
    );
    assert_eq!(
        source.describe(),
        "adultish: CSV, delimiter ',', no header, trimmed, 3 columns"
    );

    let untrimmed = ReadOptions {
        trim: Some(false),
        ..Default::default()
    };
    let (_, batch) = read(&path, &untrimmed).await;
    assert_eq!(strings(&batch, "column_2")[0], Some(" State-gov".into()));
    // Numbers and missing tokens are read trimmed regardless.
    assert_eq!(strings(&batch, "column_2")[1], None);
    assert_eq!(ints(&batch, "column_1")[0], Some(39));
}

#[tokio::test]
async fn quoted_fields_keep_delimiters_quotes_and_newlines() {
    let dir = TempDir::new().expect("tempdir");
    let path = write(
        &dir,
        "quoted.csv",
        b"id,note\n1,\"a, b; c\"\n2,\"say \"\"hi\"\"\"\n3,\"two\nlines\"\n4,plain\n5,\"x\",oops\n",
    );
    let error = read_error(&path, &ReadOptions::default()).await;
    // Line 7: the quoted newline in row 3 is a physical line of its own.
    assert!(
        matches!(
            error,
            ReadError::Ragged {
                line: 7,
                found: 3,
                expected: 2,
                ..
            }
        ),
        "{error}"
    );
    let path = write(
        &dir,
        "quoted_ok.csv",
        b"id,note\n1,\"a, b; c\"\n2,\"say \"\"hi\"\"\"\n3,\"two\nlines\"\n4,plain\n",
    );
    let (_, batch) = read_default(&path).await;
    assert_eq!(
        strings(&batch, "note"),
        [
            Some("a, b; c".into()),
            Some("say \"hi\"".into()),
            Some("two\nlines".into()),
            Some("plain".into())
        ]
    );
}

#[tokio::test]
async fn preamble_lines_are_skipped_and_reported() {
    let dir = TempDir::new().expect("tempdir");
    let path = write(
        &dir,
        "pre.test",
        b"|1x3 Cross validator\n25, Private, 1\n38, Private, 2\n\n",
    );
    let (source, batch) = read_default(&path).await;
    assert_eq!(source.dialect().expect("CSV").preamble_lines, 1);
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(ints(&batch, "column_1"), [Some(25), Some(38)]);
    assert_eq!(
        source.describe(),
        "pre: CSV, delimiter ',', no header, trimmed, 3 columns, skipped 1 preamble line"
    );

    let path = write(
        &dir,
        "title.csv",
        b"Exported 2024\nby tool\nid,v\n1,a\n2,b\n3,c\n",
    );
    let (source, batch) = read_default(&path).await;
    let dialect = source.dialect().expect("CSV");
    assert_eq!((dialect.preamble_lines, dialect.has_header), (2, true));
    assert_eq!(ints(&batch, "id"), [Some(1), Some(2), Some(3)]);
}

#[tokio::test]
async fn options_override_sniffing() {
    let dir = TempDir::new().expect("tempdir");
    let path = write(&dir, "o.csv", b"a;b\n-;x\n2;y\n");
    let opts = ReadOptions {
        delimiter: Some(b';'),
        has_header: Some(false),
        null_tokens: Some(vec!["-".into()]),
        ..Default::default()
    };
    let (source, batch) = read(&path, &opts).await;
    assert_eq!(names(&source), ["column_1", "column_2"]);
    assert_eq!(
        strings(&batch, "column_1"),
        [Some("a".into()), None, Some("2".into())]
    );
    // With custom tokens `?` or `NA` are ordinary values.
    let path = write(&dir, "p.csv", b"k,v\nNA,1\n?,2\n");
    let opts = ReadOptions {
        null_tokens: Some(vec!["-".into()]),
        ..Default::default()
    };
    let (_, batch) = read(&path, &opts).await;
    assert_eq!(strings(&batch, "k"), [Some("NA".into()), Some("?".into())]);
}

#[tokio::test]
async fn gzip_csv_is_decompressed() {
    let dir = TempDir::new().expect("tempdir");
    let path = write(
        &dir,
        "events.csv.gz",
        &gzip(b"id,at\n1,2020-01-01 00:00:00\n2,2020-01-02 00:00:00\n"),
    );
    let (source, batch) = read_default(&path).await;
    assert_eq!(source.name(), "events");
    assert!(source.dialect().expect("CSV").gzip);
    assert_eq!(ints(&batch, "id"), [Some(1), Some(2)]);
    assert!(
        source
            .describe()
            .starts_with("events: CSV (gzip), delimiter ','"),
        "{}",
        source.describe()
    );
}

// ---- bad input -----------------------------------------------------------

#[tokio::test]
async fn missing_file_is_not_found() {
    let dir = TempDir::new().expect("tempdir");
    let missing = dir.path().join("nope.csv").to_string_lossy().into_owned();
    let error = read_error(&missing, &ReadOptions::default()).await;
    assert!(matches!(error, ReadError::NotFound { .. }), "{error}");
    assert!(file_of(&error).contains("nope.csv"), "{error}");
}

#[tokio::test]
async fn empty_and_whitespace_files_are_empty() {
    let dir = TempDir::new().expect("tempdir");
    for (name, content) in [
        ("zero.csv", &b""[..]),
        ("blank.csv", b"  \n\n \t\n"),
        ("zero.parquet", b""),
    ] {
        let path = write(&dir, name, content);
        let error = read_error(&path, &ReadOptions::default()).await;
        assert!(matches!(error, ReadError::Empty { .. }), "{name}: {error}");
        assert!(error.to_string().contains(name), "{error}");
    }
    let path = write(&dir, "empty.csv.gz", &gzip(b""));
    let error = read_error(&path, &ReadOptions::default()).await;
    assert!(matches!(error, ReadError::Empty { .. }), "{error}");
    let empty_dir = dir.path().join("nothing");
    std::fs::create_dir(&empty_dir).expect("mkdir");
    let error = read_error(&empty_dir.to_string_lossy(), &ReadOptions::default()).await;
    assert!(matches!(error, ReadError::Empty { .. }), "{error}");
}

#[tokio::test]
async fn header_only_file_is_reported() {
    let dir = TempDir::new().expect("tempdir");
    let path = write(&dir, "head.csv", b"\nsubject_id,hadm_id,admittime\n");
    let error = read_error(&path, &ReadOptions::default()).await;
    assert!(
        matches!(error, ReadError::HeaderOnly { line: 2, .. }),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        format!("{path}: only a header (line 2) and no data rows")
    );
}

#[tokio::test]
async fn ragged_row_names_line_and_counts() {
    let dir = TempDir::new().expect("tempdir");
    let path = write(&dir, "ragged.csv", b"a,b,c\n1,2,3\n4,5\n6,7,8\n");
    let error = read_error(&path, &ReadOptions::default()).await;
    assert!(
        matches!(
            error,
            ReadError::Ragged {
                line: 3,
                found: 2,
                expected: 3,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("{path}: line 3 has 2 fields, expected 3")),
        "{error}"
    );
    // Blank lines still count as lines.
    let path = write(&dir, "gaps.csv", b"a,b,c\n1,2,3\n\n\r\n4,5,6\n\n7,8\n");
    let error = read_error(&path, &ReadOptions::default()).await;
    assert!(
        matches!(error, ReadError::Ragged { line: 7, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn invalid_utf8_names_line_and_column() {
    let dir = TempDir::new().expect("tempdir");
    let path = write(&dir, "latin1.csv", b"id,name\n1,ok\n2,caf\xe9\n");
    let error = read_error(&path, &ReadOptions::default()).await;
    assert!(
        matches!(
            error,
            ReadError::Undecodable {
                line: 3,
                column: 2,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("line 3, column 2"), "{error}");
}

#[tokio::test]
async fn truncated_gzip_is_a_read_error() {
    let dir = TempDir::new().expect("tempdir");
    let mut text = String::from("id,v\n");
    for i in 0..5_000 {
        text.push_str(&format!("{i},{}\n", i * 7));
    }
    let packed = gzip(text.as_bytes());
    let path = write(&dir, "cut.csv.gz", &packed[..packed.len() / 2]);
    let error = read_error(&path, &ReadOptions::default()).await;
    assert!(
        matches!(error, ReadError::Io { line, .. } if line > 1),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("{path}: read failed near line")),
        "{error}"
    );
}

#[tokio::test]
async fn non_finite_numbers_are_refused() {
    let dir = TempDir::new().expect("tempdir");
    // Inside the inference sample: refused at open.
    let path = write(&dir, "nan.csv", b"x,y\n1.5,a\nNaN,b\n2,c\n");
    let error = read_error(&path, &ReadOptions::default()).await;
    assert!(
        matches!(&error, ReadError::NonFinite { line: 3, column, value, .. } if column == "x" && value == "NaN"),
        "{error}"
    );
    assert!(error.to_string().contains("empty field"), "{error}");
    // After the sample: refused by the scan, with its line.
    let mut text = String::from("x\n");
    for i in 0..50 {
        text.push_str(if i == 40 { "-inf\n" } else { "3\n" });
    }
    let path = write(&dir, "late.csv", text.as_bytes());
    let opts = ReadOptions {
        infer_rows: 10,
        ..Default::default()
    };
    let error = read_error(&path, &opts).await;
    assert!(
        matches!(&error, ReadError::NonFinite { line: 42, value, .. } if value == "-inf"),
        "{error}"
    );
}

#[tokio::test]
async fn late_type_conflict_names_line_and_can_be_declared() {
    let dir = TempDir::new().expect("tempdir");
    let mut text = String::from("code,v\n");
    for i in 0..100 {
        text.push_str(&format!(
            "{},{i}\n",
            if i == 70 {
                "A12".to_owned()
            } else {
                i.to_string()
            }
        ));
    }
    let path = write(&dir, "codes.csv", text.as_bytes());
    let opts = ReadOptions {
        infer_rows: 20,
        batch_rows: 16,
        ..Default::default()
    };
    let error = read_error(&path, &opts).await;
    assert!(
        matches!(&error, ReadError::TypeConflict { line: 72, column, value, expected, inferred_from: 20, .. }
            if column == "code" && value == "A12" && expected == "Int64"),
        "{error}"
    );
    assert!(error.to_string().contains("column_types"), "{error}");

    let declared = ReadOptions {
        column_types: vec![("code".into(), DataType::Utf8)],
        ..opts.clone()
    };
    let (source, batch) = read(&path, &declared).await;
    assert_eq!(types(&source), [DataType::Utf8, DataType::Int64]);
    assert_eq!(strings(&batch, "code")[70], Some("A12".into()));

    let bad = ReadOptions {
        column_types: vec![("nope".into(), DataType::Utf8)],
        ..opts.clone()
    };
    assert!(matches!(
        read_error(&path, &bad).await,
        ReadError::Columns { .. }
    ));
    let unsupported = ReadOptions {
        column_types: vec![("v".into(), DataType::Int32)],
        ..opts
    };
    assert!(matches!(
        read_error(&path, &unsupported).await,
        ReadError::Unsupported { .. }
    ));
}

#[tokio::test]
async fn corrupt_parquet_is_reported() {
    let dir = TempDir::new().expect("tempdir");
    let path = write(
        &dir,
        "junk.parquet",
        b"PAR1 this is not really parquet PAR1",
    );
    let error = read_error(&path, &ReadOptions::default()).await;
    assert!(
        matches!(error, ReadError::CorruptParquet { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("junk.parquet"), "{error}");

    let good = write_parquet(&dir, "good.parquet", &sample_batch(0, 100));
    let bytes = std::fs::read(&good).expect("read parquet");
    let path = write(&dir, "cut.parquet", &bytes[..bytes.len() / 2]);
    let error = read_error(&path, &ReadOptions::default()).await;
    assert!(
        matches!(error, ReadError::CorruptParquet { .. }),
        "{error:?}"
    );
}

// ---- Parquet -------------------------------------------------------------

fn sample_batch(start: i64, rows: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("label", DataType::Utf8, true),
    ]));
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(start..start + rows));
    let labels: ArrayRef = Arc::new(StringArray::from_iter(
        (start..start + rows).map(|i| (i % 3 != 0).then(|| format!("l{i}"))),
    ));
    RecordBatch::try_new(schema, vec![ids, labels]).expect("batch")
}

fn write_parquet(dir: &TempDir, name: &str, batch: &RecordBatch) -> String {
    let path = dir.path().join(name);
    write_parquet_at(&path, batch);
    path.to_string_lossy().into_owned()
}

fn write_parquet_at(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).expect("create parquet");
    let mut writer =
        ::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(batch).expect("write");
    writer.close().expect("close");
}

#[tokio::test]
async fn parquet_roundtrip_by_extension_and_by_magic() {
    let dir = TempDir::new().expect("tempdir");
    let original = sample_batch(0, 500);
    for name in ["t.parquet", "t2.pq", "noext"] {
        let path = write_parquet(&dir, name, &original);
        let (source, batch) = read_default(&path).await;
        assert_eq!(source.format(), Format::Parquet, "{name}");
        assert!(source.dialect().is_none());
        assert_eq!(types(&source), [DataType::Int64, DataType::Utf8], "{name}");
        assert_eq!(batch.num_rows(), 500);
        assert_eq!(ints(&batch, "id"), ints(&original, "id"), "{name}");
        assert_eq!(
            strings(&batch, "label"),
            strings(&original, "label"),
            "{name}"
        );
    }
    let (source, _) = read_default(&dir.path().join("t.parquet").to_string_lossy()).await;
    assert_eq!(source.describe(), "t: Parquet, 2 columns");
    let url = format!("file://{}", dir.path().join("t2.pq").display());
    let (source, batch) = read_default(&url).await;
    assert_eq!((source.name(), batch.num_rows()), ("t2", 500));
}

#[tokio::test]
async fn directory_of_parquet_files_reads_in_file_order() {
    let dir = TempDir::new().expect("tempdir");
    let table = dir.path().join("admissions");
    std::fs::create_dir(&table).expect("mkdir");
    for part in 0..3 {
        write_parquet_at(
            &table.join(format!("part-{part}.parquet")),
            &sample_batch(part * 1000, 1000),
        );
    }
    std::fs::write(table.join("_SUCCESS"), b"").expect("marker");
    let input = format!("{}/", table.display());
    let opts = ReadOptions {
        batch_rows: 300,
        ..Default::default()
    };
    let (source, batch) = read(&input, &opts).await;
    assert_eq!(source.name(), "admissions");
    assert_eq!(batch.num_rows(), 3000);
    let expected: Vec<Option<i64>> = (0..3000).map(Some).collect();
    assert_eq!(ints(&batch, "id"), expected);
}

#[tokio::test]
async fn csv_directory_is_unsupported() {
    let dir = TempDir::new().expect("tempdir");
    write(&dir, "a.csv", b"x\n1\n");
    let error = read_error(&dir.path().to_string_lossy(), &ReadOptions::default()).await;
    assert!(matches!(error, ReadError::Unsupported { .. }), "{error}");
}

// ---- streaming -----------------------------------------------------------

#[tokio::test]
async fn streaming_twice_gives_the_same_batches() {
    let dir = TempDir::new().expect("tempdir");
    let mut text = String::from("id,group,value\n");
    for i in 0..2_500 {
        text.push_str(&format!("{i},g{},{}\n", i % 7, i as f64 / 4.0));
    }
    let path = write(&dir, "big.csv", text.as_bytes());
    let opts = ReadOptions {
        batch_rows: 1_000,
        ..Default::default()
    };
    let source = open_table(&path, &opts).await.expect("open");
    let mut passes = Vec::new();
    for _ in 0..2 {
        let mut stream = source.stream().await.expect("stream");
        let mut sizes = Vec::new();
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.expect("batch");
            sizes.push(batch.num_rows());
            batches.push(batch);
        }
        assert_eq!(sizes, [1_000, 1_000, 500]);
        passes.push(concat_batches(&source.schema(), &batches).expect("concat"));
    }
    assert_eq!(passes[0], passes[1]);
    assert_eq!(
        ints(&passes[0], "id"),
        (0..2_500).map(Some).collect::<Vec<_>>()
    );
    // A stream dropped half-way does not disturb the next pass.
    let mut partial = source.stream().await.expect("stream");
    assert!(partial.next().await.is_some());
    drop(partial);
    let (_, again) = read(&path, &opts).await;
    assert_eq!(again, passes[0]);
    // The table is queryable through the session too.
    let frame = source.context().table(source.name()).await.expect("table");
    assert_eq!(frame.count().await.expect("count"), 2_500);
}

// ---- object store --------------------------------------------------------

/// A `moto_server` S3 on a free port, killed on drop.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = std::process::Command::new("moto_server")
        .args(["-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(moto);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    None
}

#[tokio::test]
async fn s3_csv_and_parquet_through_moto() {
    let Some(moto) = start_moto() else {
        assert!(
            std::env::var_os("CHIMERA_REQUIRE_S3").is_none(),
            "CHIMERA_REQUIRE_S3 is set but moto_server did not start"
        );
        println!("skipped: moto_server is not installed or did not start");
        return;
    };
    let created = std::process::Command::new("curl")
        .args(["-sf", "-X", "PUT", &format!("{}/chimera", moto.endpoint)])
        .status();
    if !created.is_ok_and(|status| status.success()) {
        println!("skipped: could not create the bucket with curl");
        return;
    }
    let storage_options: Vec<(String, String)> = [
        ("aws_endpoint", moto.endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
        ("aws_virtual_hosted_style_request", "false"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let url = url::Url::parse("s3://chimera/").expect("url");
    let (store, _) = object_store::parse_url_opts(&url, storage_options.clone()).expect("store");
    let mut text = String::from("id, name\n");
    for i in 0..20_000 {
        text.push_str(&format!("{i}, n{}\n", i % 10));
    }
    let put = |key: &str, bytes: Vec<u8>| {
        let path = object_store::path::Path::from(key);
        let store = &store;
        async move { store.put(&path, bytes.into()).await.expect("put") }
    };
    put("raw/people.csv.gz", gzip(text.as_bytes())).await;
    let dir = TempDir::new().expect("tempdir");
    for part in 0..2 {
        let local = write_parquet(&dir, "p.parquet", &sample_batch(part * 10, 10));
        put(
            &format!("tables/people/part-{part}.parquet"),
            std::fs::read(local).expect("read"),
        )
        .await;
    }

    let opts = ReadOptions {
        storage_options,
        batch_rows: 4_096,
        ..Default::default()
    };
    let (source, batch) = read("s3://chimera/raw/people.csv.gz", &opts).await;
    assert_eq!(source.name(), "people");
    assert!(source.dialect().expect("CSV").trim);
    assert_eq!(batch.num_rows(), 20_000);
    assert_eq!(strings(&batch, "name")[19_999], Some("n9".into()));

    for input in ["s3://chimera/tables/people", "s3://chimera/tables/people/"] {
        let (source, batch) = read(input, &opts).await;
        assert_eq!(
            (source.name(), source.format()),
            ("people", Format::Parquet),
            "{input}"
        );
        assert_eq!(
            ints(&batch, "id"),
            (0..20).map(Some).collect::<Vec<_>>(),
            "{input}"
        );
    }
    let source = open_table("s3://chimera/raw/people.csv.gz", &opts)
        .await
        .expect("open");
    let mut first = source.stream().await.expect("stream");
    let mut second = source.stream().await.expect("stream");
    let (a, b) = (first.next().await, second.next().await);
    assert_eq!(
        a.expect("batch").expect("ok"),
        b.expect("batch").expect("ok")
    );

    let error = read_error("s3://chimera/raw/missing.csv", &opts).await;
    assert!(matches!(error, ReadError::NotFound { .. }), "{error}");
}

// ---- real files ----------------------------------------------------------

fn present(path: &str) -> bool {
    let here = Path::new(path).exists();
    if !here {
        println!("skipped: {path} is not present");
    }
    here
}

#[tokio::test]
async fn adult_data_reads_raw() {
    if !present(ADULT_DATA) {
        return;
    }
    let (source, batch) = read_default(ADULT_DATA).await;
    assert_eq!(source.name(), "adult");
    assert_eq!(batch.num_rows(), 32_561);
    assert_eq!(batch.num_columns(), 15);
    let kinds = types(&source);
    assert_eq!(kinds[0], DataType::Int64);
    assert_eq!(kinds[1], DataType::Utf8);
    assert_eq!(kinds[2], DataType::Int64);
    assert_eq!(ints(&batch, "column_1")[0], Some(39));
    let workclass = column::<StringArray>(&batch, "column_2");
    assert_eq!(workclass.value(0), "State-gov");
    assert_eq!(workclass.null_count(), 1_836);
    assert_eq!(
        column::<StringArray>(&batch, "column_7").null_count(),
        1_843
    );
    assert_eq!(column::<StringArray>(&batch, "column_14").null_count(), 583);
    let label = column::<StringArray>(&batch, "column_15");
    assert_eq!(label.iter().filter(|v| *v == Some(">50K")).count(), 7_841);
    assert_eq!(
        source.describe(),
        "adult: CSV, delimiter ',', no header, trimmed, 15 columns"
    );
}

#[tokio::test]
async fn adult_test_skips_its_preamble() {
    if !present(ADULT_TEST) {
        return;
    }
    let (source, batch) = read_default(ADULT_TEST).await;
    assert_eq!(batch.num_rows(), 16_281);
    assert_eq!(batch.num_columns(), 15);
    assert_eq!(source.dialect().expect("CSV").preamble_lines, 1);
    assert_eq!(ints(&batch, "column_1")[0], Some(25));
    let label = column::<StringArray>(&batch, "column_15");
    assert_eq!(label.iter().filter(|v| *v == Some(">50K.")).count(), 3_846);
    assert!(
        source.describe().ends_with("skipped 1 preamble line"),
        "{}",
        source.describe()
    );
}

#[tokio::test]
async fn mimic_admissions_reads_gzip_with_timestamps() {
    if !present(MIMIC_ADMISSIONS) {
        return;
    }
    let (source, batch) = read_default(MIMIC_ADMISSIONS).await;
    assert_eq!(source.name(), "admissions");
    assert_eq!(batch.num_rows(), 275);
    assert_eq!(batch.num_columns(), 16);
    let schema = source.schema();
    let type_of = |name: &str| {
        schema
            .field_with_name(name)
            .expect("column")
            .data_type()
            .clone()
    };
    assert_eq!(type_of("subject_id"), DataType::Int64);
    assert_eq!(
        type_of("admittime"),
        DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    assert_eq!(
        type_of("deathtime"),
        DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    assert_eq!(type_of("admission_type"), DataType::Utf8);
    assert_eq!(type_of("hospital_expire_flag"), DataType::Int64);
    assert_eq!(ints(&batch, "subject_id")[0], Some(10_004_235));
    let admit = column::<TimestampMicrosecondArray>(&batch, "admittime");
    assert_eq!(admit.value(0), 7_136_606_280_000_000);
    assert!(column::<TimestampMicrosecondArray>(&batch, "deathtime").null_count() > 200);
    // `?` in language is missing.
    assert!(strings(&batch, "language")[1].is_none());
}

/// Parsing throughput on a generated ~100 MB file (`--ignored`; build
/// profile matters, debug builds of this crate are several times slower).
#[tokio::test]
#[ignore = "benchmark"]
async fn csv_throughput() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("bench.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    writeln!(out, "id,age,name,score,when,flag").expect("write");
    for i in 0..1_200_000u64 {
        writeln!(
            out,
            "{i},{},name {},{:.3},2020-01-{:02} 10:{:02}:00,{}",
            i % 90,
            i % 1000,
            i as f64 * 0.37,
            i % 28 + 1,
            i % 60,
            i % 2 == 0
        )
        .expect("write");
    }
    drop(out);
    let bytes = std::fs::metadata(&path).expect("meta").len();
    let source = open_table(&path.to_string_lossy(), &ReadOptions::default())
        .await
        .expect("open");
    let started = std::time::Instant::now();
    let mut stream = source.stream().await.expect("stream");
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch.expect("batch").num_rows();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{rows} rows, {:.1} MB in {seconds:.2} s: {:.1} MB/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / seconds
    );
    assert_eq!(rows, 1_200_000);
}
