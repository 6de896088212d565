//! Turning `partition 1 | 2,3` into the cuts each node must make.
//!
//! Pure: parses the groups a user typed and says, for every node, which
//! peers it must isolate itself from. It must never talk to a node.

use std::collections::{BTreeMap, BTreeSet};

/// Parses the words after `partition` into groups of node ids.
///
/// Groups are separated by `|` or `/` or by whitespace; ids inside a group
/// by commas: `1 | 2,3`, `1/2,3` and `1 2,3` are the same partition. Nodes
/// of `all` that no group names form one more group together. Every id
/// must belong to `all` and appear once, and there must be at least two
/// groups in the end.
pub fn parse_groups(words: &[String], all: &[u64]) -> Result<Vec<BTreeSet<u64>>, String> {
    let text = words.join(" ").replace(['|', '/'], " ");
    let known: BTreeSet<u64> = all.iter().copied().collect();
    let mut seen = BTreeSet::new();
    let mut groups = Vec::new();
    for word in text.split_whitespace() {
        let mut group = BTreeSet::new();
        for part in word.split(',').filter(|p| !p.is_empty()) {
            let id: u64 = part
                .parse()
                .map_err(|_| format!("'{part}' is not a node id (groups look like: 1 | 2,3)"))?;
            if !known.contains(&id) {
                return Err(format!(
                    "no node {id} in this cluster (nodes: {})",
                    list(all)
                ));
            }
            if !seen.insert(id) {
                return Err(format!(
                    "node {id} is named twice; each node belongs to one group"
                ));
            }
            group.insert(id);
        }
        if !group.is_empty() {
            groups.push(group);
        }
    }
    let rest: BTreeSet<u64> = known.difference(&seen).copied().collect();
    if !rest.is_empty() {
        groups.push(rest);
    }
    if groups.len() < 2 {
        return Err(format!(
            "a partition needs at least two groups, e.g. `partition 1 | 2,3` (nodes: {})",
            list(all)
        ));
    }
    Ok(groups)
}

/// For every node, the peers outside its group: what it must isolate
/// itself from so that each group is cut from every other.
pub fn cuts(groups: &[BTreeSet<u64>]) -> BTreeMap<u64, Vec<u64>> {
    let all: BTreeSet<u64> = groups.iter().flatten().copied().collect();
    let mut out = BTreeMap::new();
    for group in groups {
        let others: Vec<u64> = all.difference(group).copied().collect();
        for &id in group {
            out.insert(id, others.clone());
        }
    }
    out
}

/// `[1, 2, 3]` as `1, 2, 3`.
pub fn list(ids: &[u64]) -> String {
    ids.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Groups as the user would type them: `1 | 2,3`.
pub fn show(groups: &[BTreeSet<u64>]) -> String {
    groups
        .iter()
        .map(|g| g.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn spellings_of_the_same_partition_agree() {
        let all = [1, 2, 3];
        let want = vec![set(&[1]), set(&[2, 3])];
        for s in [
            "1 | 2,3",
            "1|2,3",
            "1/2,3",
            "1 2,3",
            "1",
            "1 |",
            "1 , | 2,3,",
        ] {
            assert_eq!(parse_groups(&words(s), &all), Ok(want.clone()), "{s}");
        }
        // Quoted as one shell word.
        assert_eq!(parse_groups(&["1 | 2,3".to_owned()], &all), Ok(want));
    }

    #[test]
    fn unnamed_nodes_form_their_own_group() {
        let all = [1, 2, 3, 4, 5];
        let g = parse_groups(&words("1,2 | 3"), &all).unwrap();
        assert_eq!(g, vec![set(&[1, 2]), set(&[3]), set(&[4, 5])]);
        assert_eq!(show(&g), "1,2 | 3 | 4,5");
    }

    #[test]
    fn three_way_cut_is_three_groups() {
        let g = parse_groups(&words("1 | 2 | 3"), &[1, 2, 3]).unwrap();
        let c = cuts(&g);
        assert_eq!(c[&1], vec![2, 3]);
        assert_eq!(c[&2], vec![1, 3]);
        assert_eq!(c[&3], vec![1, 2]);
    }

    #[test]
    fn cuts_are_symmetric_and_spare_the_own_group() {
        let g = parse_groups(&words("1,4 | 2 | 3,5"), &[1, 2, 3, 4, 5]).unwrap();
        let c = cuts(&g);
        assert_eq!(c[&1], vec![2, 3, 5]);
        assert_eq!(c[&4], vec![2, 3, 5]);
        assert_eq!(c[&2], vec![1, 3, 4, 5]);
        for (&a, peers) in &c {
            for &b in peers {
                assert!(c[&b].contains(&a), "{a} cuts {b} but not the reverse");
            }
        }
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn bad_groupings_are_refused() {
        let all = [1, 2, 3];
        let err = |s: &str| parse_groups(&words(s), &all).unwrap_err();
        assert!(err("7 | 1").contains("no node 7"));
        assert!(err("1 | 1,2").contains("named twice"));
        assert!(err("1,2,3").contains("at least two groups"));
        assert!(err("").contains("at least two groups"));
        assert!(err("a | 2").contains("not a node id"));
        assert!(err("-1 | 2").contains("not a node id"));
    }
}
