//! The output writer against real stores: a local folder and an S3-compatible server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod local;
mod s3;
mod scenarios;

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chimera_storage::{Manifest, ManifestPrivacy, ManifestTable, Output, PartInfo, PrivacyMode};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::PutPayload;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("score", DataType::Float64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("active", DataType::Boolean, true),
        Field::new("born", DataType::Date32, true),
        Field::new(
            "seen_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]))
}

/// `n` rows starting at id `start`, with a null in every nullable column every third row.
pub fn batch(schema: &SchemaRef, start: i64, n: i64) -> RecordBatch {
    let ids: Vec<i64> = (start..start + n).collect();
    let some = |i: &i64| i % 3 != 0;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(Float64Array::from_iter(
            ids.iter().map(|i| some(i).then_some(*i as f64 * 0.5)),
        )),
        Arc::new(StringArray::from_iter(
            ids.iter()
                .map(|i| some(i).then(|| format!("name-{}", i % 4))),
        )),
        Arc::new(BooleanArray::from_iter(
            ids.iter().map(|i| some(i).then_some(i % 2 == 0)),
        )),
        Arc::new(Date32Array::from_iter(
            ids.iter().map(|i| some(i).then_some(18_000 + *i as i32)),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter(
                ids.iter()
                    .map(|i| some(i).then_some(1_700_000_000_000_000 + i * 1_000_003)),
            )
            .with_timezone("UTC"),
        ),
    ];
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

/// About 13 MB of strings that neither the dictionary nor Snappy can shrink much.
pub fn incompressible_batches() -> (SchemaRef, Vec<RecordBatch>) {
    let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("blob", DataType::Utf8, false)]));
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let batches = (0..4)
        .map(|_| {
            let values: Vec<String> = (0..50_000)
                .map(|_| (0..4).map(|_| format!("{:016x}", next())).collect())
                .collect();
            RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(values))]).unwrap()
        })
        .collect();
    (schema, batches)
}

pub fn manifest_for(parts: Vec<PartInfo>, table: &str) -> Manifest {
    let mut manifest = Manifest::new(
        "cd".repeat(32),
        7,
        ManifestPrivacy {
            mode: PrivacyMode::None,
            epsilon: None,
            delta: None,
            notes: vec![],
        },
        100,
    );
    manifest.table = table.to_string();
    let mut t = ManifestTable::new(schema().fields().iter().map(|f| f.name().clone()).collect());
    for p in parts {
        t.push_part(p);
    }
    manifest.rows_requested = t.rows;
    manifest.tables.insert(table.to_string(), t);
    manifest
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// The object at `relative`, or `None`.
pub async fn get(out: &Output, relative: &str) -> Option<Vec<u8>> {
    let loc = out.location();
    match loc.store().get(&loc.object_path(relative)).await {
        Ok(r) => Some(r.bytes().await.unwrap().to_vec()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("get {relative}: {e}"),
    }
}

pub async fn put(out: &Output, relative: &str, bytes: &[u8]) {
    let loc = out.location();
    loc.store()
        .put(&loc.object_path(relative), PutPayload::from(bytes.to_vec()))
        .await
        .unwrap();
}

pub async fn delete(out: &Output, relative: &str) {
    let loc = out.location();
    loc.store()
        .delete(&loc.object_path(relative))
        .await
        .unwrap();
}

/// Every object under the output, relative to its root, sorted.
pub async fn names(out: &Output) -> Vec<String> {
    let loc = out.location();
    let root = loc.object_path("");
    let listed: Vec<Path> = loc
        .store()
        .list(Some(&root))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .unwrap();
    let mut names: Vec<String> = listed
        .iter()
        .map(|p| {
            p.as_ref()
                .strip_prefix(root.as_ref())
                .unwrap()
                .trim_start_matches('/')
                .to_string()
        })
        .collect();
    names.sort();
    names
}

/// Reads the Parquet object at `relative` back into batches.
pub async fn read_parquet(out: &Output, relative: &str) -> (SchemaRef, Vec<RecordBatch>) {
    let loc = out.location();
    let bytes = loc
        .store()
        .get(&loc.object_path(relative))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let schema = builder.schema().clone();
    let batches = builder
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (schema, batches)
}
