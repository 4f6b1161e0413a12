//! Where a key lives: Redis Cluster's slots, and the map from slots to primaries.
//!
//! A single Redis is a "cluster" of one node that owns every slot, so the same routing
//! serves both. Only what the store needs: the slot of a key (CRC16 of its hash tag, as
//! Redis computes it), the slot map from `CLUSTER SLOTS`, and the key tags that fall in
//! a node's own slots (for the keys each node keeps about itself).

use super::resp::Reply;

/// Slots in a cluster.
pub(crate) const SLOTS: usize = 16_384;

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster maps keys with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`: of its hash tag (what is between the first `{` and the next `}`,
/// if that is not empty), else of the whole key.
pub(crate) fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter()
            .position(|b| *b == b'}')
            .filter(|close| *close > 0)
            .map(|close| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

/// Which node owns each slot, and the nodes' addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SlotMap {
    /// `host:port` of each primary.
    pub(crate) nodes: Vec<String>,
    /// For each slot, its node's index in `nodes`.
    pub(crate) owner: Box<[u16]>,
}

impl SlotMap {
    /// One node owning every slot (a single Redis).
    pub(crate) fn single(addr: &str) -> Self {
        Self {
            nodes: vec![addr.to_owned()],
            owner: vec![0; SLOTS].into_boxed_slice(),
        }
    }

    /// From a `CLUSTER SLOTS` reply; every slot must have a primary.
    pub(crate) fn from_reply(r: &Reply) -> Result<Self, String> {
        let bad = |why: &str| format!("CLUSTER SLOTS: {why}");
        let mut nodes: Vec<String> = Vec::new();
        let mut owner = vec![u16::MAX; SLOTS].into_boxed_slice();
        for range in r.items().ok_or_else(|| bad("not an array"))? {
            let items = range
                .items()
                .ok_or_else(|| bad("a range is not an array"))?;
            let [start, end, primary, ..] = items else {
                return Err(bad("a range without its primary"));
            };
            let slot_of = |r: &Reply| {
                r.int()
                    .and_then(|i| usize::try_from(i).ok())
                    .filter(|i| *i < SLOTS)
                    .ok_or_else(|| bad("a slot outside 0..16383"))
            };
            let (start, end) = (slot_of(start)?, slot_of(end)?);
            let node = primary
                .items()
                .ok_or_else(|| bad("a node is not an array"))?;
            let (host, port) = match node {
                [host, port, ..] => (
                    host.bytes()
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .ok_or_else(|| bad("a host that is not text"))?,
                    port.int()
                        .ok_or_else(|| bad("a port that is not a number"))?,
                ),
                _ => return Err(bad("a node without host and port")),
            };
            let addr = format!("{host}:{port}");
            let i = match nodes.iter().position(|n| *n == addr) {
                Some(i) => i,
                None => {
                    nodes.push(addr);
                    nodes.len() - 1
                }
            };
            let i = u16::try_from(i).map_err(|_| bad("too many nodes"))?;
            for s in owner
                .get_mut(start..=end)
                .ok_or_else(|| bad("a range ending before it starts"))?
            {
                *s = i;
            }
        }
        if owner.contains(&u16::MAX) {
            return Err(bad("some slots have no node (is the cluster complete?)"));
        }
        Ok(Self { nodes, owner })
    }

    /// The index of the node that owns `key`.
    pub(crate) fn node_of(&self, key: &[u8]) -> usize {
        usize::from(self.owner[usize::from(slot(key))])
    }

    /// A hash tag, `{<name>-<n>}`, whose slot node `i` owns: for keys a node keeps about
    /// itself.
    pub(crate) fn tag_on(&self, i: usize, name: &str) -> String {
        (0u32..)
            .map(|n| format!("{{{name}-{n}}}"))
            .find(|t| usize::from(self.owner[usize::from(slot(t.as_bytes()))]) == i)
            .unwrap_or_else(|| unreachable!("every node owns a slot, and tags reach them all"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        assert_eq!(slot(b"foo{{bar}}zap"), crc16(b"{bar") % 16384);
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
    }

    #[test]
    fn a_slot_map_from_cluster_slots() {
        let node = |port: i64| {
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"127.0.0.1".to_vec())),
                Reply::Int(port),
                Reply::Bulk(Some(b"id".to_vec())),
            ]))
        };
        let range = |a: i64, b: i64, port: i64| {
            Reply::Array(Some(vec![Reply::Int(a), Reply::Int(b), node(port)]))
        };
        let r = Reply::Array(Some(vec![
            range(0, 5460, 7000),
            range(5461, 10922, 7001),
            range(10923, 16383, 7002),
        ]));
        let m = SlotMap::from_reply(&r).unwrap();
        assert_eq!(
            m.nodes,
            ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]
        );
        assert_eq!(m.node_of(b"foo"), 2);
        for i in 0..3 {
            let t = m.tag_on(i, "seen");
            assert_eq!(m.node_of(t.as_bytes()), i, "{t}");
        }
        let gap = Reply::Array(Some(vec![range(0, 5460, 7000)]));
        assert!(SlotMap::from_reply(&gap).is_err());
        assert_eq!(SlotMap::single("h:1").tag_on(0, "seen"), "{seen-0}");
    }
}
