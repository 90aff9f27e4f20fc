//! etcd's backend (a bbolt file with etcd's buckets) to our backend image
//! and back.
//!
//! ```text
//!  etcd bucket        our image table   conversion
//!  meta               Meta              compaction marks: 17-byte revision ⇄ u64 BE;
//!                                       confState: read into EtcdCluster, written from it;
//!                                       schema_version: ours only; other names as they are
//!  key                Key               as is (etcd's revision keys and KeyValues)
//!  lease, alarm       Lease, Alarm      as is
//!  auth, authUsers,   Auth, AuthUsers,  as is (kept while our auth is not built)
//!  authRoles          AuthRoles
//!  cluster, members,  (EtcdCluster)     read and checked on import; written from the
//!  members_removed                      live cluster view on export
//! ```
//!
//! Import walks the bbolt file bucket by bucket (meta first, as images
//! want it) and streams rows into an [`mvcc::ImageWriter`]: memory stays
//! bounded by the meta bucket and the membership rows, whatever the file
//! size. Export is a [`RowSource`] that yields our rows in etcd's bucket
//! order, for the two passes of [`etcdfmt::bbolt::Plan`].

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Context, Result};
use etcdfmt::bbolt::{self, Db, RowSource};
use etcdfmt::schema::{self, ConfStateJson, DowngradeJson, MemberJson};
use mvcc::{ImageInfo, ImageSource, ImageWriter, Table};

/// The page size of the bbolt files we write: etcd's (the OS page size).
pub const PAGE_SIZE_BYTES: u32 = 4096;

/// What etcd's membership buckets and `confState` hold: kept out of our
/// backend (our cluster metadata lives in raft snapshots), carried beside it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdCluster {
    /// Sorted by ID.
    pub members: Vec<MemberJson>,
    /// Sorted.
    pub removed: Vec<u64>,
    /// `cluster/clusterVersion` (`3.5.0`).
    pub cluster_version: Option<String>,
    /// `cluster/downgrade` (etcd 3.6).
    pub downgrade: Option<DowngradeJson>,
    /// `meta/confState` (etcd 3.5+).
    pub conf_state: Option<ConfStateJson>,
}

impl EtcdCluster {
    /// The rows etcd would keep for this cluster view: the members, the
    /// removed IDs, the cluster version, a running downgrade job, and as
    /// conf state the voters and learners among the members.
    pub fn of(cluster: &crate::membership::Cluster) -> EtcdCluster {
        let members: Vec<MemberJson> = cluster
            .members()
            .into_iter()
            .map(super::member_to_json)
            .collect();
        let mut conf_state = ConfStateJson::default();
        for m in &members {
            if m.is_learner {
                conf_state.learners.push(m.id);
            } else {
                conf_state.voters.push(m.id);
            }
        }
        let downgrade = cluster.downgrade_info();
        EtcdCluster {
            removed: cluster.removed(),
            cluster_version: cluster.version(),
            downgrade: downgrade.enabled.then_some(DowngradeJson {
                target_version: downgrade.target_version,
                enabled: true,
            }),
            conf_state: (!members.is_empty()).then_some(conf_state),
            members,
        }
    }
}

/// The result of an import.
#[derive(Clone, Debug)]
pub struct Imported {
    pub info: ImageInfo,
    pub cluster: EtcdCluster,
}

/// Reads every bucket of an etcd backend file and writes our backend image
/// of it to `out`. Refuses a bucket etcd 3.4-3.6 does not write, a row
/// whose encoding is not etcd's, or a damaged file, naming what and where.
pub fn import(db: &Db, out: &mut dyn Write) -> Result<Imported> {
    let buckets = db.buckets().context("read the bucket list")?;
    for name in &buckets {
        if !schema::BUCKETS.contains(&name.as_slice()) {
            bail!(
                "bucket {:?} is not one etcd 3.4-3.6 writes (a newer etcd?): refusing to \
                 convert data we cannot carry over",
                String::from_utf8_lossy(name)
            );
        }
    }
    let mut cluster = EtcdCluster::default();
    let mut writer = ImageWriter::new(out).context("start the image")?;
    for (name, value) in import_meta(db, &mut cluster)? {
        writer
            .row(Table::Meta, name.as_bytes(), &value)
            .with_context(|| format!("meta row {name:?}"))?;
    }
    let copied = [
        (schema::KEY, Table::Key),
        (schema::LEASE, Table::Lease),
        (schema::ALARM, Table::Alarm),
        (schema::AUTH, Table::Auth),
        (schema::AUTH_USERS, Table::AuthUsers),
        (schema::AUTH_ROLES, Table::AuthRoles),
    ];
    for (bucket, table) in copied {
        rows_of(db, bucket, &mut |key, value| {
            if table == Table::Key && schema::decode_rev(key).is_none() {
                return Err(bbolt::Error::Callback(format!(
                    "key bucket: {key:02x?} is not a revision key"
                )));
            }
            writer
                .row(table, key, value)
                .map_err(|e| bbolt::Error::Callback(format!("{} bucket: {e}", table.name())))
        })
        .with_context(|| format!("read the {} bucket", table.name()))?;
    }
    import_cluster(db, &mut cluster)?;
    let info = writer.finish().context("finish the image")?;
    Ok(Imported { info, cluster })
}

/// What an etcd backend says about the log before its rows are imported.
#[derive(Clone, Debug, Default)]
pub struct Peek {
    /// `meta/consistent_index`: the last entry applied to this file (etcd
    /// 3.4 moves it with key-value writes only, 3.5+ with every entry).
    pub consistent_index: u64,
    /// The membership buckets and `confState`.
    pub cluster: EtcdCluster,
}

/// Reads the meta and membership buckets only (small, whatever the file's
/// size), checked as [`import`] checks them.
pub fn peek(db: &Db) -> Result<Peek> {
    let mut cluster = EtcdCluster::default();
    let meta = import_meta(db, &mut cluster)?;
    import_cluster(db, &mut cluster)?;
    let consistent_index = meta
        .get(schema::META_CONSISTENT_INDEX)
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, u64::from_be_bytes);
    Ok(Peek {
        consistent_index,
        cluster,
    })
}

/// Called with a key and a value.
type KeyValueFn<'a> = dyn FnMut(&[u8], &[u8]) -> bbolt::Result<()> + 'a;
/// Called with a bucket, a key and a value (what [`RowSource`] yields).
type BucketRowFn<'a> = dyn FnMut(&[u8], &[u8], &[u8]) -> std::io::Result<()> + 'a;

/// Calls `f` with every row of an etcd bucket; a nested bucket (etcd
/// writes none) is data we could not carry over, so it is refused.
fn rows_of(db: &Db, bucket: &[u8], f: &mut KeyValueFn<'_>) -> Result<()> {
    db.for_each_entry(bucket, &mut |entry| match entry {
        bbolt::Entry::Value(key, value) => f(key, value),
        bbolt::Entry::Bucket(name) => Err(bbolt::Error::Callback(format!(
            "bucket {:?} holds a nested bucket {:?}, which etcd never writes",
            String::from_utf8_lossy(bucket),
            String::from_utf8_lossy(name)
        ))),
    })?;
    Ok(())
}

/// The meta rows of our image for etcd's `meta` bucket, in order.
fn import_meta(db: &Db, cluster: &mut EtcdCluster) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut rows = BTreeMap::new();
    rows_of(db, schema::META, &mut |key, value| {
        match meta_from_etcd(key, value) {
            Ok(MetaRow::Keep(name, value)) => {
                rows.insert(name, value);
            }
            Ok(MetaRow::ConfState(cs)) => cluster.conf_state = Some(cs),
            Err(e) => return Err(bbolt::Error::Callback(format!("{e:#}"))),
        }
        Ok(())
    })
    .context("read the meta bucket")?;
    let (name, value) = mvcc::schema_version_row();
    rows.insert(name.to_string(), value.to_vec());
    Ok(rows)
}

enum MetaRow {
    Keep(String, Vec<u8>),
    ConfState(ConfStateJson),
}

fn meta_from_etcd(key: &[u8], value: &[u8]) -> Result<MetaRow> {
    let name = std::str::from_utf8(key)
        .map_err(|_| anyhow::anyhow!("meta key {key:02x?} is not UTF-8"))?;
    let u64_row = || -> Result<MetaRow> {
        if value.len() != 8 {
            bail!("meta {name}: {} bytes, etcd writes 8", value.len());
        }
        Ok(MetaRow::Keep(name.to_string(), value.to_vec()))
    };
    match name {
        schema::META_CONSISTENT_INDEX | schema::META_TERM => u64_row(),
        schema::META_SCHEDULED_COMPACT | schema::META_FINISHED_COMPACT => {
            let (main, _, _) = schema::decode_rev(value)
                .filter(|(_, _, tombstone)| !tombstone)
                .ok_or_else(|| anyhow::anyhow!("meta {name}: {value:02x?} is not a revision"))?;
            Ok(MetaRow::Keep(name.to_string(), main.to_be_bytes().to_vec()))
        }
        schema::META_CONF_STATE => serde_json::from_slice(value)
            .map(MetaRow::ConfState)
            .with_context(|| format!("meta {name}: not raftpb.ConfState JSON")),
        // storageVersion and names we do not interpret travel as they are.
        _ => Ok(MetaRow::Keep(name.to_string(), value.to_vec())),
    }
}

fn import_cluster(db: &Db, cluster: &mut EtcdCluster) -> Result<()> {
    let fail = bbolt::Error::Callback;
    rows_of(db, schema::MEMBERS, &mut |key, value| {
        let id = schema::parse_member_key(key)
            .ok_or_else(|| fail(format!("members: key {key:02x?} is not a member ID")))?;
        let member: MemberJson = serde_json::from_slice(value)
            .map_err(|e| fail(format!("members: member {id:x}: {e}")))?;
        if member.id != id {
            return Err(fail(format!(
                "members: row {id:x} holds member {:x}",
                member.id
            )));
        }
        cluster.members.push(member);
        Ok(())
    })
    .context("read the members bucket")?;
    rows_of(db, schema::MEMBERS_REMOVED, &mut |key, _| {
        let id = schema::parse_member_key(key).ok_or_else(|| {
            bbolt::Error::Callback(format!(
                "members_removed: key {key:02x?} is not a member ID"
            ))
        })?;
        cluster.removed.push(id);
        Ok(())
    })
    .context("read the members_removed bucket")?;
    rows_of(db, schema::CLUSTER, &mut |key, value| {
        let text = || {
            String::from_utf8(value.to_vec())
                .map_err(|_| bbolt::Error::Callback(format!("cluster: {key:02x?} is not UTF-8")))
        };
        match key {
            schema::CLUSTER_VERSION => cluster.cluster_version = Some(text()?),
            schema::CLUSTER_DOWNGRADE => {
                cluster.downgrade = Some(
                    serde_json::from_slice(value)
                        .map_err(|e| bbolt::Error::Callback(format!("cluster: downgrade: {e}")))?,
                );
            }
            other => {
                return Err(bbolt::Error::Callback(format!(
                    "cluster: unknown key {:?}",
                    String::from_utf8_lossy(other)
                )))
            }
        }
        Ok(())
    })
    .context("read the cluster bucket")?;
    cluster.members.sort_by_key(|m| m.id);
    cluster.removed.sort_unstable();
    Ok(())
}

/// Our backend's rows in etcd's buckets and encodings, in bbolt's order:
/// what [`etcdfmt::bbolt::Plan`] lays out as etcd's backend file.
pub struct BboltRows<'a> {
    source: &'a ImageSource,
    cluster: &'a EtcdCluster,
    /// `meta/storageVersion` carried over (etcd 3.6's record).
    storage_version: bool,
}

impl<'a> BboltRows<'a> {
    pub fn new(source: &'a ImageSource, cluster: &'a EtcdCluster) -> BboltRows<'a> {
        BboltRows {
            source,
            cluster,
            storage_version: true,
        }
    }

    /// Leaves `meta/storageVersion` out, as etcd's `migrate` to 3.5 does.
    pub fn without_storage_version(mut self) -> BboltRows<'a> {
        self.storage_version = false;
        self
    }

    /// Lays out the file (a pass over every row that writes nothing).
    pub fn plan(&mut self) -> Result<bbolt::Plan> {
        bbolt::Plan::new(&schema::BUCKETS, PAGE_SIZE_BYTES, self).context("lay out the bbolt file")
    }

    fn table(&self, table: Table, bucket: &[u8], f: &mut BucketRowFn<'_>) -> std::io::Result<()> {
        self.source
            .for_each_row_of(table, &mut |_, key, value| {
                f(bucket, key, value).map_err(|e| mvcc::Error::Corrupt(format!("write row: {e}")))
            })
            .map_err(std::io::Error::other)
    }

    fn meta_rows(&self) -> std::io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        let mut rows = BTreeMap::new();
        self.source
            .for_each_row_of(Table::Meta, &mut |_, key, value| {
                if !self.storage_version && key == schema::META_STORAGE_VERSION.as_bytes() {
                    return Ok(());
                }
                if let Some((name, value)) = meta_to_etcd(key, value)? {
                    rows.insert(name, value);
                }
                Ok(())
            })
            .map_err(std::io::Error::other)?;
        if let Some(cs) = &self.cluster.conf_state {
            let json = serde_json::to_vec(cs).map_err(std::io::Error::other)?;
            rows.insert(schema::META_CONF_STATE.as_bytes().to_vec(), json);
        }
        Ok(rows)
    }
}

/// One of our meta rows as etcd keeps it (None: ours only).
fn meta_to_etcd(key: &[u8], value: &[u8]) -> mvcc::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let (schema_version, _) = mvcc::schema_version_row();
    let name = key;
    if name == schema_version.as_bytes() {
        return Ok(None);
    }
    if name == schema::META_SCHEDULED_COMPACT.as_bytes()
        || name == schema::META_FINISHED_COMPACT.as_bytes()
    {
        let bytes: [u8; 8] = value.try_into().map_err(|_| {
            mvcc::Error::Corrupt(format!(
                "meta {} is not 8 bytes",
                String::from_utf8_lossy(name)
            ))
        })?;
        let main = i64::from_be_bytes(bytes);
        return Ok(Some((name.to_vec(), schema::encode_rev(main, 0).to_vec())));
    }
    Ok(Some((name.to_vec(), value.to_vec())))
}

impl RowSource for BboltRows<'_> {
    fn rows(&mut self, f: &mut BucketRowFn<'_>) -> std::io::Result<()> {
        for bucket in schema::BUCKETS {
            match bucket {
                schema::ALARM => self.table(Table::Alarm, bucket, f)?,
                schema::AUTH => self.table(Table::Auth, bucket, f)?,
                schema::AUTH_ROLES => self.table(Table::AuthRoles, bucket, f)?,
                schema::AUTH_USERS => self.table(Table::AuthUsers, bucket, f)?,
                schema::KEY => self.table(Table::Key, bucket, f)?,
                schema::LEASE => self.table(Table::Lease, bucket, f)?,
                schema::CLUSTER => {
                    if let Some(version) = &self.cluster.cluster_version {
                        f(bucket, schema::CLUSTER_VERSION, version.as_bytes())?;
                    }
                    if let Some(downgrade) = &self.cluster.downgrade {
                        let json = serde_json::to_vec(downgrade).map_err(std::io::Error::other)?;
                        f(bucket, schema::CLUSTER_DOWNGRADE, &json)?;
                    }
                }
                schema::MEMBERS => {
                    let mut rows: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                    for m in &self.cluster.members {
                        let json = serde_json::to_vec(m).map_err(std::io::Error::other)?;
                        rows.push((schema::member_key(m.id), json));
                    }
                    rows.sort();
                    for (key, value) in rows {
                        f(bucket, &key, &value)?;
                    }
                }
                schema::MEMBERS_REMOVED => {
                    let mut keys: Vec<Vec<u8>> = self
                        .cluster
                        .removed
                        .iter()
                        .map(|id| schema::member_key(*id))
                        .collect();
                    keys.sort();
                    for key in keys {
                        f(bucket, &key, schema::REMOVED_VALUE)?;
                    }
                }
                schema::META => {
                    for (key, value) in self.meta_rows()? {
                        f(bucket, &key, &value)?;
                    }
                }
                other => {
                    return Err(std::io::Error::other(format!(
                        "no rows for bucket {:?}",
                        String::from_utf8_lossy(other)
                    )))
                }
            }
        }
        Ok(())
    }
}

/// etcd 3.6's `snapshot status` of a bbolt file: CRC-32C over each
/// bucket's name and its rows' keys and values, in bbolt's order; the keys
/// that exist at the last revision (3.5 counted every row of every bucket);
/// the main revision of the last `key` row; the size bbolt reports (pages
/// in use × page size); the storage version if one is recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BboltStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
    pub version: Option<String>,
}

pub fn bbolt_status(db: &Db) -> Result<BboltStatus> {
    use prost::Message;
    let mut status = BboltStatus {
        total_size: db.size_bytes(),
        ..Default::default()
    };
    let mut crc = mvcc::Crc32c::new();
    // Like etcd: the set of live keys, in memory.
    let mut live: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    for bucket in db.buckets().context("read the bucket list")? {
        crc.update(&bucket);
        let is_key = bucket.as_slice() == schema::KEY;
        let is_meta = bucket.as_slice() == schema::META;
        db.for_each(&bucket, &mut |key, value| {
            crc.update(key);
            crc.update(value);
            if is_key {
                let (main, _, tombstone) = schema::decode_rev(key).ok_or_else(|| {
                    bbolt::Error::Callback(format!("cannot parse revision key: {key:02x?}"))
                })?;
                status.revision = main;
                let kv = api::mvccpb::KeyValue::decode(value).map_err(|e| {
                    bbolt::Error::Callback(format!("cannot unmarshal value, key: {key:02x?}: {e}"))
                })?;
                if tombstone {
                    live.remove(&kv.key);
                } else {
                    live.insert(kv.key);
                }
            }
            if is_meta && key == schema::META_STORAGE_VERSION.as_bytes() {
                status.version = Some(String::from_utf8_lossy(value).into_owned());
            }
            Ok(())
        })
        .with_context(|| format!("read the {:?} bucket", String::from_utf8_lossy(&bucket)))?;
    }
    status.total_keys = live.len() as u64;
    status.hash = crc.finish();
    Ok(status)
}
