//! What every store must do; each scenario starts from an empty output prefix.

use arrow::compute::concat_batches;
use chimera_storage::{
    MANIFEST_FILE, MODEL_FILE, MULTIPART_THRESHOLD_BYTES, Output, OutputState, SUCCESS_FILE,
    StorageError,
};

use crate::{
    batch, delete, get, incompressible_batches, manifest_for, names, put, read_parquet, schema,
    sha256_hex,
};

/// Attempts uploaded, committed (a retry overwriting the first commit), manifest, finish.
pub async fn round_trip(out: &Output) {
    assert_eq!(out.state().await.unwrap(), OutputState::Empty);
    out.write_model(b"{\"model\":1}").await.unwrap();
    let schema = schema();
    let shard0 = vec![batch(&schema, 0, 50), batch(&schema, 50, 25)];
    let shard1 = vec![batch(&schema, 1000, 40)];

    let a0 = out
        .write_attempt("adult", 0, 3, &schema, &shard0)
        .await
        .unwrap();
    let a1 = out
        .write_attempt("adult", 1, 1, &schema, &shard1)
        .await
        .unwrap();
    assert_eq!(a0.path, "_attempts/adult/part-00000-a3.parquet");
    assert_eq!((a0.shard, a0.attempt, a0.rows), (0, 3, 75));
    assert_eq!((a1.shard, a1.attempt, a1.rows), (1, 1, 40));
    let uploaded = get(out, &a0.path).await.unwrap();
    assert_eq!(a0.bytes, uploaded.len() as u64);
    assert_eq!(a0.sha256, sha256_hex(&uploaded));
    assert_ne!(a0.sha256, a1.sha256);
    // Attempts alone make an unfinished output, readers of `adult/` see nothing yet.
    assert!(matches!(
        out.state().await.unwrap(),
        OutputState::Unfinished { manifest: None, model: Some(m) } if m == b"{\"model\":1}"
    ));

    let mut manifest = manifest_for(vec![], "adult");
    out.write_manifest(&manifest).await.unwrap();
    let c0 = out.commit_part(&a0).await.unwrap();
    let c1 = out.commit_part(&a1).await.unwrap();
    assert_eq!(c0.path, "adult/part-00000.parquet");
    assert_eq!(c1.path, "adult/part-00001.parquet");
    assert_eq!(
        (c0.bytes, &c0.sha256, c0.attempt),
        (a0.bytes, &a0.sha256, 3)
    );
    assert!(get(out, &a0.path).await.is_none(), "attempt deleted");
    manifest
        .tables
        .get_mut("adult")
        .unwrap()
        .push_part(c0.clone());
    manifest.tables.get_mut("adult").unwrap().push_part(c1);
    out.write_manifest(&manifest).await.unwrap();

    // A later attempt of shard 1 replaces the committed part and its manifest entry.
    let retry = vec![batch(&schema, 2000, 10)];
    let a1b = out
        .write_attempt("adult", 1, 4, &schema, &retry)
        .await
        .unwrap();
    let c1b = out.commit_part(&a1b).await.unwrap();
    assert_eq!(c1b.path, "adult/part-00001.parquet");
    manifest
        .tables
        .get_mut("adult")
        .unwrap()
        .push_part(c1b.clone());
    assert_eq!(manifest.total_rows(), 85);
    out.write_manifest(&manifest).await.unwrap();
    match out.state().await.unwrap() {
        OutputState::Unfinished {
            manifest: Some(m),
            model: Some(_),
        } => {
            assert!(!m.complete);
            assert_eq!(m.committed_shards().into_iter().collect::<Vec<_>>(), [0, 1]);
        }
        other => panic!("{other:?}"),
    }

    for (part, expected) in [(&c0, &shard0), (&c1b, &retry)] {
        let bytes = get(out, &part.path).await.unwrap();
        assert_eq!(part.sha256, sha256_hex(&bytes));
        let (read_schema, read) = read_parquet(out, &part.path).await;
        assert_eq!(read_schema, schema);
        let got = concat_batches(&schema, &read).unwrap();
        let want = concat_batches(&schema, expected.iter()).unwrap();
        assert_eq!(got, want);
        assert!(got.column(1).null_count() > 0);
    }

    out.finish(&manifest).await.unwrap();
    assert_eq!(get(out, SUCCESS_FILE).await.unwrap(), b"");
    match out.state().await.unwrap() {
        OutputState::Finished(m) => {
            assert!(m.complete);
            let mut expected = manifest.clone();
            expected.complete = true;
            assert_eq!(m, expected);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        names(out).await,
        [
            SUCCESS_FILE,
            MANIFEST_FILE,
            MODEL_FILE,
            "adult/part-00000.parquet",
            "adult/part-00001.parquet"
        ]
    );
}

/// A part over the multipart threshold goes up in pieces and reads back whole.
pub async fn multipart(out: &Output) {
    let (schema, batches) = incompressible_batches();
    let attempt = out
        .write_attempt("blobs", 2, 1, &schema, &batches)
        .await
        .unwrap();
    assert!(
        attempt.bytes > MULTIPART_THRESHOLD_BYTES as u64 + 4 * 1024 * 1024,
        "{} bytes is too small to need more than one piece",
        attempt.bytes
    );
    assert_eq!(attempt.rows, 200_000);
    let uploaded = get(out, &attempt.path).await.unwrap();
    assert_eq!(uploaded.len() as u64, attempt.bytes);
    assert_eq!(sha256_hex(&uploaded), attempt.sha256);
    let part = out.commit_part(&attempt).await.unwrap();
    let (_, read) = read_parquet(out, &part.path).await;
    assert_eq!(
        concat_batches(&schema, &read).unwrap(),
        concat_batches(&schema, &batches).unwrap()
    );
}

pub async fn discard_attempt(out: &Output) {
    let schema = schema();
    let a = out
        .write_attempt("adult", 5, 2, &schema, &[batch(&schema, 0, 5)])
        .await
        .unwrap();
    let keep = out
        .write_attempt("adult", 5, 3, &schema, &[batch(&schema, 0, 5)])
        .await
        .unwrap();
    out.discard_attempt("adult", 5, 2).await.unwrap();
    assert!(get(out, &a.path).await.is_none());
    assert!(get(out, &keep.path).await.is_some());
    // Discarding what is not there is fine; a bad table name is not.
    out.discard_attempt("adult", 5, 2).await.unwrap();
    out.discard_attempt("adult", 9, 9).await.unwrap();
    assert!(matches!(
        out.discard_attempt("../adult", 5, 2).await,
        Err(StorageError::InvalidTable { .. })
    ));
    // A discarded attempt cannot be committed.
    let err = out.commit_part(&a).await.unwrap_err();
    assert!(matches!(err, StorageError::PartNotFound { .. }), "{err:?}");
    assert!(!err.retryable());
}

/// Empty, foreign files only, attempts only, unfinished, finished, and a foreign `_SUCCESS`.
pub async fn states(out: &Output) {
    assert_eq!(out.state().await.unwrap(), OutputState::Empty);
    put(out, "notes.txt", b"mine").await;
    assert_eq!(out.state().await.unwrap(), OutputState::Empty);

    let schema = schema();
    let a = out
        .write_attempt("adult", 0, 1, &schema, &[batch(&schema, 0, 5)])
        .await
        .unwrap();
    assert_eq!(
        out.state().await.unwrap(),
        OutputState::Unfinished {
            manifest: None,
            model: None
        }
    );
    let part = out.commit_part(&a).await.unwrap();
    let manifest = manifest_for(vec![part], "adult");
    out.write_manifest(&manifest).await.unwrap();
    assert_eq!(
        out.state().await.unwrap(),
        OutputState::Unfinished {
            manifest: Some(manifest.clone()),
            model: None
        }
    );
    // An unfinished run is cleared without --overwrite.
    out.prepare(false).await.unwrap();
    assert_eq!(out.state().await.unwrap(), OutputState::Empty);
    assert_eq!(names(out).await, ["notes.txt"]);

    let a = out
        .write_attempt("adult", 0, 1, &schema, &[batch(&schema, 0, 5)])
        .await
        .unwrap();
    let part = out.commit_part(&a).await.unwrap();
    let manifest = manifest_for(vec![part], "adult");
    out.finish(&manifest).await.unwrap();
    assert!(matches!(out.state().await.unwrap(), OutputState::Finished(m) if m.complete));
    let err = out.prepare(false).await.unwrap_err();
    assert!(
        matches!(err, StorageError::AlreadyComplete { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("--overwrite"), "{err}");
    assert!(
        get(out, SUCCESS_FILE).await.is_some(),
        "a refused prepare touches nothing"
    );

    // A crash between the final manifest and the marker leaves an unfinished run.
    delete(out, SUCCESS_FILE).await;
    assert!(matches!(
        out.state().await.unwrap(),
        OutputState::Unfinished { manifest: Some(m), .. } if m.complete
    ));
    // Another tool's `_SUCCESS` without a manifest is neither ours to clear nor a chimera run.
    put(out, SUCCESS_FILE, b"").await;
    delete(out, MANIFEST_FILE).await;
    let err = out.state().await.unwrap_err();
    assert!(matches!(err, StorageError::ForeignMarker { .. }), "{err:?}");
    assert!(out.prepare(true).await.is_err());
    assert!(get(out, SUCCESS_FILE).await.is_some());
}

/// A finished run, overwritten: chimera's files go, the user's stay.
pub async fn clear_keeps_foreign_files(out: &Output) {
    let schema = schema();
    out.write_model(b"{}").await.unwrap();
    let mut parts = Vec::new();
    for shard in 0..2 {
        let a = out
            .write_attempt("adult", shard, 1, &schema, &[batch(&schema, 0, 10)])
            .await
            .unwrap();
        parts.push(out.commit_part(&a).await.unwrap());
    }
    out.finish(&manifest_for(parts, "adult")).await.unwrap();

    put(out, "notes.txt", b"mine").await;
    put(out, "other/part-00000.parquet", b"not chimera's table").await;
    put(out, "adult/README", b"keep").await;
    put(out, "adult/part-00000.parquet.bak", b"keep").await;
    // Committed after the last manifest write, and a stale upload.
    put(out, "adult/part-00007.parquet", b"orphan").await;
    put(out, "_attempts/adult/part-00009-a1.parquet", b"stale").await;
    put(out, "_attempts/gone/part-00000-a1.parquet", b"stale").await;

    out.prepare(true).await.unwrap();
    assert_eq!(
        names(out).await,
        [
            "adult/README",
            "adult/part-00000.parquet.bak",
            "notes.txt",
            "other/part-00000.parquet"
        ]
    );
    assert_eq!(get(out, "notes.txt").await.unwrap(), b"mine");
    assert_eq!(out.state().await.unwrap(), OutputState::Empty);
    // Clearing twice is harmless.
    out.clear().await.unwrap();
}

/// A missing or truncated part stops `finish` before the marker.
pub async fn finish_refuses_missing_or_truncated_parts(out: &Output) {
    let schema = schema();
    let a = out
        .write_attempt("adult", 0, 1, &schema, &[batch(&schema, 0, 20)])
        .await
        .unwrap();
    let part = out.commit_part(&a).await.unwrap();

    let mut wrong = part.clone();
    wrong.bytes += 1;
    let err = out
        .finish(&manifest_for(vec![wrong], "adult"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::PartSizeMismatch { .. }),
        "{err:?}"
    );
    assert!(!err.retryable());

    let mut missing = part.clone();
    missing.shard = 9;
    missing.path = "adult/part-00009.parquet".into();
    let err = out
        .finish(&manifest_for(vec![part.clone(), missing], "adult"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::PartNotFound { path } if path.ends_with("adult/part-00009.parquet")),
        "{err:?}"
    );
    assert!(!err.retryable());

    let bytes = get(out, &part.path).await.unwrap();
    put(out, &part.path, &bytes[..bytes.len() / 2]).await;
    let err = out
        .finish(&manifest_for(vec![part], "adult"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::PartSizeMismatch { .. }),
        "{err:?}"
    );

    assert!(get(out, SUCCESS_FILE).await.is_none());
    assert!(get(out, MANIFEST_FILE).await.is_none());
}

/// Stale and uncommitted uploads are gone once the run is finished.
pub async fn finish_removes_leftover_attempts(out: &Output) {
    let schema = schema();
    let a = out
        .write_attempt("adult", 0, 2, &schema, &[batch(&schema, 0, 5)])
        .await
        .unwrap();
    out.write_attempt("adult", 0, 1, &schema, &[batch(&schema, 0, 5)])
        .await
        .unwrap();
    out.write_attempt("adult", 1, 1, &schema, &[batch(&schema, 5, 5)])
        .await
        .unwrap();
    let part = out.commit_part(&a).await.unwrap();
    out.finish(&manifest_for(vec![part], "adult"))
        .await
        .unwrap();
    assert_eq!(
        names(out).await,
        [SUCCESS_FILE, MANIFEST_FILE, "adult/part-00000.parquet"]
    );
}

/// `commit_part` checks the attempt before copying anything.
pub async fn commit_refuses_bad_attempts(out: &Output) {
    let schema = schema();
    let a = out
        .write_attempt("adult", 3, 1, &schema, &[batch(&schema, 0, 5)])
        .await
        .unwrap();

    let mut wrong = a.clone();
    wrong.bytes -= 1;
    let err = out.commit_part(&wrong).await.unwrap_err();
    assert!(
        matches!(err, StorageError::PartSizeMismatch { .. }),
        "{err:?}"
    );

    let mut mislabelled = a.clone();
    mislabelled.attempt = 2;
    let err = out.commit_part(&mislabelled).await.unwrap_err();
    assert!(matches!(err, StorageError::InvalidPart { .. }), "{err:?}");

    let committed = out.commit_part(&a).await.unwrap();
    let err = out.commit_part(&committed).await.unwrap_err();
    assert!(matches!(err, StorageError::InvalidPart { .. }), "{err:?}");
    // Committing the same attempt twice finds it gone.
    let err = out.commit_part(&a).await.unwrap_err();
    assert!(matches!(err, StorageError::PartNotFound { .. }), "{err:?}");
    assert_eq!(names(out).await, ["adult/part-00003.parquet"]);
}
