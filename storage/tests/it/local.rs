//! The output on a local folder.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow::array::Int64Array;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use chimera_storage::{
    Location, MANIFEST_FILE, MAX_ROW_GROUP_ROWS, Output, OutputState, SUCCESS_FILE, StorageError,
};
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::{TestResult, batch, manifest_for, scenarios, schema};

fn output_in(dir: &Path) -> Output {
    Output::new(Location::parse(dir.to_str().unwrap(), &[]).unwrap())
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let out = output_in(dir.path());
    scenarios::round_trip(&out).await;
    // Finishing removes the emptied attempt folders.
    assert_eq!(
        names_in(dir.path()),
        [SUCCESS_FILE, MANIFEST_FILE, "_model.json", "adult"]
    );
    assert_eq!(
        fs::metadata(dir.path().join(SUCCESS_FILE)).unwrap().len(),
        0
    );
    let text = fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
    assert!(
        text.contains("\n  \"format\""),
        "pretty JSON expected: {text}"
    );
    assert!(text.contains("\"complete\": true"), "{text}");
}

#[tokio::test]
async fn multipart() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::multipart(&output_in(dir.path())).await;
}

#[tokio::test]
async fn discard_attempt() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::discard_attempt(&output_in(dir.path())).await;
}

#[tokio::test]
async fn states() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::states(&output_in(dir.path())).await;
}

#[tokio::test]
async fn clear_keeps_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::clear_keeps_foreign_files(&output_in(dir.path())).await;
    assert_eq!(names_in(dir.path()), ["adult", "notes.txt", "other"]);
}

#[tokio::test]
async fn finish_refuses_missing_or_truncated_parts() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::finish_refuses_missing_or_truncated_parts(&output_in(dir.path())).await;
}

#[tokio::test]
async fn finish_removes_leftover_attempts() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::finish_removes_leftover_attempts(&output_in(dir.path())).await;
    assert!(!dir.path().join("_attempts").exists());
}

/// Workers upload attempts into `_attempts/<table>/` while the coordinator commits others
/// from it. A commit must never remove the folder under a worker's upload: object_store's
/// local upload creates the folder and then opens the file, two steps another delete can
/// fall between. This failed a shard of a distributed job about once in a few CI runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_never_remove_the_folder_under_a_concurrent_upload() {
    let dir = tempfile::tempdir().unwrap();
    let out = Arc::new(output_in(dir.path()));
    let schema = schema();
    let writers: Vec<_> = (0..4u32)
        .map(|w| {
            let (out, schema) = (out.clone(), schema.clone());
            tokio::spawn(async move {
                for i in 0..400u32 {
                    let shard = w * 1000 + i;
                    let a = out
                        .write_attempt("adult", shard, 1, &schema, &[batch(&schema, 0, 1)])
                        .await
                        .map_err(|e| format!("shard {shard}: {e}: {:?}", e))?;
                    out.commit_part(&a)
                        .await
                        .map_err(|e| format!("commit {shard}: {e}: {:?}", e))?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap().unwrap();
    }
    assert_eq!(
        fs::read_dir(dir.path().join("adult")).unwrap().count(),
        1600
    );
}

#[tokio::test]
async fn commit_refuses_bad_attempts() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::commit_refuses_bad_attempts(&output_in(dir.path())).await;
}

#[tokio::test]
async fn overwrite_removes_table_folders_left_empty() {
    let dir = tempfile::tempdir().unwrap();
    let out = output_in(dir.path());
    let schema = schema();
    let a = out
        .write_attempt("adult", 0, 1, &schema, &[batch(&schema, 0, 3)])
        .await
        .unwrap();
    let part = out.commit_part(&a).await.unwrap();
    out.finish(&manifest_for(vec![part], "adult"))
        .await
        .unwrap();
    out.prepare(true).await.unwrap();
    assert!(names_in(dir.path()).is_empty());
}

#[tokio::test]
async fn parts_use_snappy_dictionary_and_statistics() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = output_in(dir.path());
    let schema = schema();
    let a = out
        .write_attempt("t", 0, 0, &schema, &[batch(&schema, 0, 30)])
        .await?;
    let part = out.commit_part(&a).await?;
    let reader = SerializedFileReader::new(fs::File::open(dir.path().join(&part.path))?)?;
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows(), 30);
    assert!(
        meta.file_metadata()
            .created_by()
            .is_some_and(|s| s.starts_with("chimera "))
    );
    let row_group = meta.row_group(0);
    for column in row_group.columns() {
        assert_eq!(column.compression(), Compression::SNAPPY);
        assert!(column.statistics().is_some(), "{:?}", column.column_path());
    }
    // The low-cardinality name column is dictionary encoded.
    assert!(row_group.column(2).dictionary_page_offset().is_some());
    assert_eq!(MAX_ROW_GROUP_ROWS, 1024 * 1024);
    Ok(())
}

#[tokio::test]
async fn a_failed_encode_uploads_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = output_in(dir.path());
    let schema = schema();
    // A batch whose schema differs from the declared one fails the write.
    let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let bad = RecordBatch::try_new(other, vec![Arc::new(Int64Array::from(vec![1, 2]))])?;
    let err = out
        .write_attempt("adult", 5, 0, &schema, &[bad])
        .await
        .err();
    assert!(
        matches!(&err, Some(StorageError::Parquet { path, .. }) if path.ends_with("_attempts/adult/part-00005-a0.parquet")),
        "{err:?}"
    );
    assert!(names_in(dir.path()).is_empty());
    Ok(())
}

#[tokio::test]
async fn zero_batches_make_a_valid_empty_part() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = output_in(dir.path());
    let schema = schema();
    let a = out.write_attempt("empty", 0, 0, &schema, &[]).await?;
    assert_eq!(a.rows, 0);
    let part = out.commit_part(&a).await?;
    let (read_schema, batches) = crate::read_parquet(&out, &part.path).await;
    assert_eq!(read_schema, schema);
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    Ok(())
}

#[tokio::test]
async fn table_names_must_be_plain_folder_names() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = output_in(dir.path());
    let schema = schema();
    for bad in [
        "", "..", "../x", "a/b", "a\\b", "_SUCCESS", ".hidden", "a%b",
    ] {
        let err = out.write_attempt(bad, 0, 0, &schema, &[]).await.err();
        assert!(
            matches!(err, Some(StorageError::InvalidTable { .. })),
            "{bad:?}: {err:?}"
        );
    }
    assert!(names_in(dir.path()).is_empty());
    let a = out
        .write_attempt("admissions-2024 v2", 0, 0, &schema, &[])
        .await?;
    out.commit_part(&a).await?;
    assert_eq!(
        names_in(&dir.path().join("admissions-2024 v2")),
        ["part-00000.parquet"]
    );
    Ok(())
}

#[tokio::test]
async fn manifest_naming_a_folder_outside_root_deletes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("out");
    fs::create_dir_all(dir.path().join("victim"))?;
    fs::write(dir.path().join("victim/part-00000.parquet"), "precious")?;
    fs::create_dir_all(&root)?;
    let mut manifest = serde_json::to_value(manifest_for(vec![], "adult"))?;
    let tables = manifest["tables"].as_object_mut().ok_or("tables")?;
    let adult = tables.remove("adult").ok_or("adult")?;
    tables.insert("../victim".into(), adult);
    fs::write(root.join(MANIFEST_FILE), serde_json::to_vec(&manifest)?)?;
    fs::write(root.join(SUCCESS_FILE), "")?;

    let out = output_in(&root);
    let err = out.prepare(true).await.err();
    assert!(
        matches!(err, Some(StorageError::InvalidManifest { .. })),
        "{err:?}"
    );
    let err = out.clear().await.err();
    assert!(
        matches!(err, Some(StorageError::InvalidManifest { .. })),
        "{err:?}"
    );
    assert!(dir.path().join("victim/part-00000.parquet").exists());
    assert!(root.join(SUCCESS_FILE).exists());
    Ok(())
}

#[tokio::test]
async fn a_relative_path_and_a_file_url_name_the_same_folder() -> TestResult {
    let dir = tempfile::tempdir()?;
    let url = format!("file://{}/out", dir.path().display());
    let by_url = Output::new(Location::parse(&url, &[])?);
    by_url.write_model(b"{}").await?;
    let by_path = output_in(&dir.path().join("out"));
    assert!(matches!(
        by_path.state().await?,
        OutputState::Unfinished { model: Some(_), .. }
    ));
    Ok(())
}
