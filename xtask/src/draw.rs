//! Drawing a cluster as text: a box per node, a line per link, an `X` on
//! each cut link, the way the seed story draws its three zones.
//!
//! Pure functions from a snapshot to lines of text, so the picture is unit
//! tested. It must never decide anything about the cluster (who leads, what
//! is cut): callers pass in what the nodes reported.

/// What one node's box shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBox {
    /// The text lines inside the box (the first names the node).
    pub lines: Vec<String>,
    /// Drawn with a double border, so the leader stands out.
    pub leader: bool,
}

/// The state of the link between two nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Both ends answer and neither has cut the other.
    Up,
    /// One end (or both) has cut the other with `/v1/admin/isolate`.
    Cut,
    /// At least one end does not answer (down, paused, starting), so the
    /// link's state is not known.
    Unknown,
}

/// Columns between two neighbouring boxes: room for `───X───`.
const GAP: usize = 7;
/// Inner width of a box never goes below this, so boxes do not jitter as
/// numbers grow.
const MIN_INNER: usize = 12;

struct Border {
    top_left: char,
    top_right: char,
    bottom_left: char,
    bottom_right: char,
    horizontal: char,
    vertical: char,
    attach_left: char,
    attach_right: char,
    stem: char,
}

const SINGLE: Border = Border {
    top_left: '┌',
    top_right: '┐',
    bottom_left: '└',
    bottom_right: '┘',
    horizontal: '─',
    vertical: '│',
    attach_left: '┤',
    attach_right: '├',
    stem: '┬',
};

const DOUBLE: Border = Border {
    top_left: '╔',
    top_right: '╗',
    bottom_left: '╚',
    bottom_right: '╝',
    horizontal: '═',
    vertical: '║',
    attach_left: '╢',
    attach_right: '╟',
    stem: '╤',
};

fn fill(link: Link) -> char {
    match link {
        Link::Up | Link::Cut => '─',
        Link::Unknown => '╌',
    }
}

/// Draws `boxes` left to right. Neighbours are joined through the second
/// text line of their boxes; every other pair is joined by a lane under the
/// row of boxes. `link(i, j)` (with `i < j`, indexes into `boxes`) says how
/// to draw the link between two boxes. Lines carry no trailing spaces.
pub fn draw(boxes: &[NodeBox], link: impl Fn(usize, usize) -> Link) -> Vec<String> {
    let n = boxes.len();
    if n == 0 {
        return Vec::new();
    }
    let inner = boxes
        .iter()
        .flat_map(|b| b.lines.iter())
        .map(|l| l.chars().count() + 2)
        .max()
        .unwrap_or(0)
        .max(MIN_INNER);
    let width = inner + 2;
    let height = boxes
        .iter()
        .map(|b| b.lines.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let link_row = if height >= 2 { 2 } else { 1 };
    let left = |i: usize| i * (width + GAP);
    let centre = |i: usize| left(i) + width / 2;

    // Lanes for non-neighbours, shortest first so they nest under the boxes.
    let mut lanes: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (i + 2..n).map(move |j| (i, j)))
        .collect();
    lanes.sort_by_key(|&(i, j)| (j - i, i));
    let last_lane = |b: usize| lanes.iter().rposition(|&(i, j)| i == b || j == b);

    let total = left(n - 1) + width;
    let mut grid = vec![vec![' '; total]; height + 2 + lanes.len()];

    for (b, nb) in boxes.iter().enumerate() {
        let s = if nb.leader { &DOUBLE } else { &SINGLE };
        let x = left(b);
        grid[0][x] = s.top_left;
        grid[height + 1][x] = s.bottom_left;
        for c in 1..=inner {
            grid[0][x + c] = s.horizontal;
            grid[height + 1][x + c] = s.horizontal;
        }
        grid[0][x + width - 1] = s.top_right;
        grid[height + 1][x + width - 1] = s.bottom_right;
        for (row, line) in grid.iter_mut().enumerate().take(height + 1).skip(1) {
            line[x] = s.vertical;
            line[x + width - 1] = s.vertical;
            if let Some(text) = nb.lines.get(row - 1) {
                for (k, ch) in text.chars().enumerate() {
                    line[x + 2 + k] = ch;
                }
            }
        }
        if b > 0 {
            grid[link_row][x] = s.attach_left;
        }
        if b + 1 < n {
            grid[link_row][x + width - 1] = s.attach_right;
            let state = link(b, b + 1);
            for k in 0..GAP {
                grid[link_row][x + width + k] = fill(state);
            }
            if state == Link::Cut {
                grid[link_row][x + width + GAP / 2] = 'X';
            }
        }
        if last_lane(b).is_some() {
            grid[height + 1][centre(b)] = s.stem;
        }
    }

    for (k, &(i, j)) in lanes.iter().enumerate() {
        let row = height + 2 + k;
        let state = link(i, j);
        for cell in &mut grid[row][centre(i) + 1..centre(j)] {
            *cell = fill(state);
        }
        for b in 0..n {
            // A box's stem runs from its bottom border down to its last lane.
            let Some(last) = last_lane(b) else { continue };
            if last < k {
                continue;
            }
            let continues = last > k;
            let c = centre(b);
            grid[row][c] = if b == i {
                if continues {
                    '├'
                } else {
                    '└'
                }
            } else if b == j {
                if continues {
                    '┤'
                } else {
                    '┘'
                }
            } else if i < b && b < j {
                '┼'
            } else {
                '│'
            };
        }
        if state == Link::Cut {
            let mut mid = (centre(i) + centre(j)) / 2;
            if grid[row][mid] == '┼' {
                mid += 1;
            }
            grid[row][mid] = 'X';
        }
    }

    grid.into_iter()
        .map(|row| row.into_iter().collect::<String>().trim_end().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes(specs: &[(&str, &str, bool)]) -> Vec<NodeBox> {
        specs
            .iter()
            .map(|(name, role, leader)| NodeBox {
                lines: vec![name.to_string(), role.to_string(), "term 5".into()],
                leader: *leader,
            })
            .collect()
    }

    fn cut_between(pairs: &'static [(usize, usize)]) -> impl Fn(usize, usize) -> Link {
        move |i, j| {
            if pairs.contains(&(i, j)) {
                Link::Cut
            } else {
                Link::Up
            }
        }
    }

    #[test]
    fn three_nodes_all_linked() {
        let b = boxes(&[
            ("1a", "LEADER", true),
            ("1b", "follower", false),
            ("1c", "follower", false),
        ]);
        let got = draw(&b, |_, _| Link::Up);
        let want = [
            "╔════════════╗       ┌────────────┐       ┌────────────┐",
            "║ 1a         ║       │ 1b         │       │ 1c         │",
            "║ LEADER     ╟───────┤ follower   ├───────┤ follower   │",
            "║ term 5     ║       │ term 5     │       │ term 5     │",
            "╚══════╤═════╝       └────────────┘       └──────┬─────┘",
            "       └─────────────────────────────────────────┘",
        ];
        assert_eq!(got, want, "\n{}", got.join("\n"));
    }

    #[test]
    fn seed_story_every_link_cut() {
        let b = boxes(&[
            ("1a", "follower", false),
            ("1b", "pre_candidate", false),
            ("1c", "follower", false),
        ]);
        let got = draw(&b, |_, _| Link::Cut);
        let want = [
            "┌───────────────┐       ┌───────────────┐       ┌───────────────┐",
            "│ 1a            │       │ 1b            │       │ 1c            │",
            "│ follower      ├───X───┤ pre_candidate ├───X───┤ follower      │",
            "│ term 5        │       │ term 5        │       │ term 5        │",
            "└───────┬───────┘       └───────────────┘       └───────┬───────┘",
            "        └───────────────────────X───────────────────────┘",
        ];
        assert_eq!(got, want, "\n{}", got.join("\n"));
    }

    #[test]
    fn one_node_isolated_cuts_only_its_links() {
        let b = boxes(&[("1", "a", false), ("2", "b", false), ("3", "c", false)]);
        // Node 2 (index 1) isolated: its two neighbour links are cut, 1-3 stays.
        let got = draw(&b, cut_between(&[(0, 1), (1, 2)]));
        assert!(got[2].matches('X').count() == 2, "{}", got.join("\n"));
        assert!(!got[5].contains('X'), "{}", got.join("\n"));
        // Node 1 (index 0) isolated: 1-2 and the lane 1-3 are cut, 2-3 is up.
        let got = draw(&b, cut_between(&[(0, 1), (0, 2)]));
        let row = &got[2];
        let first_gap = row.find("───X───").expect("1-2 cut");
        assert!(
            row[first_gap + "───X───".len()..].contains("├───────┤"),
            "{}",
            got.join("\n")
        );
        assert_eq!(got[2].matches('X').count(), 1, "{}", got.join("\n"));
        assert_eq!(got[5].matches('X').count(), 1, "{}", got.join("\n"));
    }

    #[test]
    fn unknown_links_are_dashed() {
        let b = boxes(&[("1", "DOWN", false), ("2", "leader", true)]);
        let got = draw(&b, |_, _| Link::Unknown);
        assert!(got[2].contains("╌╌╌╌╌╌╌"), "{}", got.join("\n"));
        assert!(!got.iter().any(|l| l.contains('X')));
        // Two nodes have no lanes and no stems.
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn four_nodes_lanes_nest_and_cross() {
        let b = boxes(&[
            ("1", "x", false),
            ("2", "x", false),
            ("3", "x", false),
            ("4", "x", false),
        ]);
        let got = draw(&b, cut_between(&[(0, 3)]));
        let text = got.join("\n");
        // Three text lines and two borders, then pairs 1-3 and 2-4 (span
        // 2) and 1-4 (span 3): three lanes.
        assert_eq!(got.len(), 5 + 3, "{text}");
        // Lane 1-3 crosses node 2's stem, which runs on to lane 2-4.
        assert!(got[5].contains('┼'), "{text}");
        // Node 1's stem continues past lane 1-3 to lane 1-4.
        assert!(got[5].trim_start().starts_with('├'), "{text}");
        // Node 4's stem passes lane 1-3 and joins lane 2-4 from the side.
        assert!(got[5].ends_with('│') && got[6].ends_with('┤'), "{text}");
        // Only the 1-4 lane is cut.
        assert_eq!(text.matches('X').count(), 1, "{text}");
        assert!(got[7].contains('X'), "{text}");
        assert!(
            got[7].trim_start().starts_with('└') && got[7].ends_with('┘'),
            "{text}"
        );
    }

    #[test]
    fn wide_text_widens_every_box() {
        let b = vec![
            NodeBox {
                lines: vec!["a-very-long-label-here".into()],
                leader: false,
            },
            NodeBox {
                lines: vec!["b".into()],
                leader: false,
            },
        ];
        let got = draw(&b, |_, _| Link::Up);
        let widths: Vec<usize> = got[0]
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(|s| s.chars().count())
            .collect();
        assert_eq!(widths, vec![26, 26], "{}", got.join("\n"));
        // With one text line the link runs through it.
        assert!(got[1].contains("├───────┤"), "{}", got.join("\n"));
    }

    #[test]
    fn empty_cluster_draws_nothing() {
        assert!(draw(&[], |_, _| Link::Up).is_empty());
    }
}
