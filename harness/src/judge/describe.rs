//! Describing a set of experiments in the domain's words: the fewest constraints on the
//! catalogue's dimensions (`wire::catalogue::Dimension`) that pick out exactly the chosen
//! experiments among those that could have been chosen. A dimension that does not matter is left
//! out; one that does is named, with the values it takes.
//!
//! The search is the "expand, then cover" of two-level logic minimisation over multi-valued
//! variables: each chosen experiment grows into the largest box of dimension values that still
//! holds no experiment outside the choice (dimensions with many values are widened first, so the
//! coarse ones — "A on a wildcard, B specific" — are the ones that stay), and the fewest boxes that
//! cover the choice are kept.

use std::collections::BTreeSet;

use serde::Serialize;
use wire::catalogue::{describe_values, Dimension};
use wire::Experiment;

/// A description: the boxes (each a conjunction of constraints), and their words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Description {
    /// Each box as `dimension = value|value`, in the family's order; an empty box is "every
    /// experiment".
    pub boxes: Vec<Vec<(String, Vec<String>)>>,
    /// The boxes in words, joined by "; or ".
    pub text: String,
}

impl Description {
    /// The first box in words, and how many more there are.
    pub fn short(&self) -> String {
        let first = self.text.split("; or ").next().unwrap_or(&self.text);
        match self.boxes.len() {
            0 | 1 => first.to_owned(),
            n => format!("{first} (and {} more groups of cells)", n - 1),
        }
    }
}

/// One experiment as indexes into each dimension's values.
type Point = Vec<u16>;

struct Space {
    /// Per dimension, in the family's order: its values, each with the dimension carrying its
    /// words.
    dims: Vec<Vec<Dimension>>,
    names: Vec<&'static str>,
}

impl Space {
    fn of(experiments: &[&Experiment]) -> (Space, Vec<Point>) {
        let first = experiments
            .first()
            .map(|e| e.dimensions())
            .unwrap_or_default();
        let names: Vec<&'static str> = first.iter().map(|d| d.name).collect();
        let mut dims: Vec<Vec<Dimension>> = vec![Vec::new(); names.len()];
        let mut points = Vec::with_capacity(experiments.len());
        for e in experiments {
            let mut point = Vec::with_capacity(names.len());
            for (i, d) in e.dimensions().into_iter().enumerate().take(names.len()) {
                let at = match dims[i].iter().position(|v| v.value == d.value) {
                    Some(at) => at,
                    None => {
                        dims[i].push(d);
                        dims[i].len() - 1
                    }
                };
                point.push(at as u16);
            }
            points.push(point);
        }
        (Space { dims, names }, points)
    }
}

/// Per dimension, the allowed value indexes (`None`: any).
type Cube = Vec<Option<BTreeSet<u16>>>;

/// A set of experiments, as bits over the universe's indexes.
#[derive(Clone, PartialEq)]
struct Bits(Vec<u64>);

impl Bits {
    fn empty(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }

    fn full(n: usize) -> Bits {
        let mut b = Bits::empty(n);
        for i in 0..n {
            b.insert(i);
        }
        b
    }

    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn and(&mut self, other: &Bits) {
        self.0.iter_mut().zip(&other.0).for_each(|(a, b)| *a &= b);
    }

    fn or(&mut self, other: &Bits) {
        self.0.iter_mut().zip(&other.0).for_each(|(a, b)| *a |= b);
    }

    fn and_not(&mut self, other: &Bits) {
        self.0.iter_mut().zip(&other.0).for_each(|(a, b)| *a &= !b);
    }

    fn meets(&self, other: &Bits) -> bool {
        self.0.iter().zip(&other.0).any(|(a, b)| a & b != 0)
    }

    fn count_in(&self, other: &Bits) -> u32 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a & b).count_ones())
            .sum()
    }

    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

/// Which experiments have which value of each dimension.
struct Index {
    n: usize,
    by_value: Vec<Vec<Bits>>,
}

impl Index {
    fn new(space: &Space, points: &[Point]) -> Index {
        let n = points.len();
        let mut by_value: Vec<Vec<Bits>> = space
            .dims
            .iter()
            .map(|values| vec![Bits::empty(n); values.len()])
            .collect();
        for (i, p) in points.iter().enumerate() {
            for (d, &v) in p.iter().enumerate() {
                by_value[d][v as usize].insert(i);
            }
        }
        Index { n, by_value }
    }

    fn members(&self, cube: &Cube) -> Bits {
        let mut all = Bits::full(self.n);
        for (d, allowed) in cube.iter().enumerate() {
            if let Some(set) = allowed {
                let mut any = Bits::empty(self.n);
                for &v in set {
                    any.or(&self.by_value[d][v as usize]);
                }
                all.and(&any);
            }
        }
        all
    }
}

/// Describes `chosen` (ids) among `universe`: experiments of one family that could have been
/// chosen. Ids of `chosen` outside `universe` are ignored.
pub fn describe(universe: &[&Experiment], chosen: &BTreeSet<String>) -> Description {
    let family = universe
        .first()
        .map_or("experiment", |e| e.family().token());
    let (space, points) = Space::of(universe);
    let index = Index::new(&space, &points);
    let ids: Vec<String> = universe.iter().map(|e| e.id()).collect();
    let mut inside = Bits::empty(points.len());
    for (i, id) in ids.iter().enumerate() {
        if chosen.contains(id) {
            inside.insert(i);
        }
    }
    let mut outside = Bits::full(points.len());
    outside.and_not(&inside);
    if inside.count_in(&Bits::full(points.len())) == 0 {
        return Description {
            boxes: Vec::new(),
            text: "nothing".into(),
        };
    }
    // Widen the dimensions with the most values first.
    let mut order: Vec<usize> = (0..space.dims.len()).collect();
    order.sort_by_key(|&d| std::cmp::Reverse(space.dims[d].len()));
    let valid = |cube: &Cube| !index.members(cube).meets(&outside);

    let mut cubes: Vec<(Cube, Bits)> = Vec::new();
    for i in (0..points.len()).filter(|&i| inside.has(i)) {
        if cubes.iter().any(|(_, members)| members.has(i)) {
            continue;
        }
        let mut cube: Cube = points[i]
            .iter()
            .map(|&v| Some(BTreeSet::from([v])))
            .collect();
        for &d in &order {
            let saved = cube[d].take();
            if valid(&cube) {
                continue;
            }
            cube[d] = saved;
            for v in 0..space.dims[d].len() as u16 {
                if cube[d].as_mut().expect("constrained").insert(v) && !valid(&cube) {
                    cube[d].as_mut().expect("constrained").remove(&v);
                }
            }
            if cube[d]
                .as_ref()
                .is_some_and(|s| s.len() == space.dims[d].len())
            {
                cube[d] = None;
            }
        }
        let members = index.members(&cube);
        cubes.push((cube, members));
    }

    // The fewest boxes that cover the choice, greedily: largest first.
    let mut uncovered = inside.clone();
    let mut kept: Vec<Cube> = Vec::new();
    while uncovered.count_in(&Bits::full(points.len())) > 0 {
        let (best, members) = cubes
            .iter()
            .max_by_key(|(c, members)| {
                (
                    members.count_in(&uncovered),
                    std::cmp::Reverse(c.iter().filter(|a| a.is_some()).count()),
                )
            })
            .expect("every chosen point seeded a box");
        uncovered.and_not(members);
        kept.push(best.clone());
    }

    // Drop constraints implied by the others (a relation implied by two fixed addresses).
    for cube in &mut kept {
        let before = index.members(cube);
        for d in 0..cube.len() {
            if cube[d].is_some() {
                let saved = cube[d].take();
                if index.members(cube) != before {
                    cube[d] = saved;
                }
            }
        }
    }

    let boxes: Vec<Vec<(String, Vec<String>)>> = kept
        .iter()
        .map(|cube| {
            cube.iter()
                .enumerate()
                .filter_map(|(d, allowed)| {
                    let set = allowed.as_ref()?;
                    Some((
                        space.names[d].to_owned(),
                        set.iter()
                            .map(|&v| space.dims[d][v as usize].value.clone())
                            .collect(),
                    ))
                })
                .collect()
        })
        .collect();
    let texts: Vec<String> = kept
        .iter()
        .map(|cube| {
            let parts: Vec<String> = cube
                .iter()
                .enumerate()
                .filter_map(|(d, allowed)| {
                    let set = allowed.as_ref()?;
                    Some(words_for(&space.dims[d], set))
                })
                .collect();
            if parts.is_empty() {
                format!("every {family} experiment")
            } else {
                parts.join(", ")
            }
        })
        .collect();
    Description {
        boxes,
        text: texts.join("; or "),
    }
}

/// The words for the values `set` of one dimension whose values are `domain`: the values
/// themselves, or, when they are most of the domain, what they leave out ("A on anything but
/// 0.0.0.0 or [::]").
fn words_for(domain: &[Dimension], set: &BTreeSet<u16>) -> String {
    let values: Vec<&Dimension> = set.iter().map(|&v| &domain[v as usize]).collect();
    let plain = describe_values(&values);
    let left_out: Vec<&Dimension> = (0..domain.len() as u16)
        .filter(|v| !set.contains(v))
        .map(|v| &domain[v as usize])
        .collect();
    if domain[0].flags_of.is_some() || left_out.is_empty() || left_out.len() * 2 >= domain.len() {
        return plain;
    }
    // The words every value of the dimension starts with ("A on "), up to a word boundary.
    let first = &domain[0].words;
    let mut common = first.len();
    for d in domain {
        common = common.min(
            first
                .bytes()
                .zip(d.words.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let prefix = &first[..first[..common].rfind(' ').map_or(0, |i| i + 1)];
    let rest: Vec<&str> = left_out.iter().map(|d| &d.words[prefix.len()..]).collect();
    let but = if prefix.is_empty() && rest.len() == 1 {
        format!("not {}", rest[0])
    } else if prefix.is_empty() {
        format!("neither {}", rest.join(" nor "))
    } else {
        format!("{prefix}anything but {}", rest.join(" or "))
    };
    if but.len() < plain.len() {
        but
    } else {
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_cells() -> Vec<Experiment> {
        wire::catalogue()
            .into_iter()
            .filter(|e| e.family() == wire::Family::Bind)
            .collect()
    }

    fn chosen_by(cells: &[Experiment], pick: impl Fn(&str) -> bool) -> BTreeSet<String> {
        cells.iter().map(|e| e.id()).filter(|id| pick(id)).collect()
    }

    #[test]
    fn a_dimension_that_does_not_matter_is_left_out() {
        let cells = bind_cells();
        let universe: Vec<&Experiment> = cells.iter().collect();
        // Every cell whose A listens with both options and whose B sets SO_REUSEADDR only: any
        // address, either user, and TCP goes unsaid since only TCP sockets listen.
        let chosen = chosen_by(&cells, |id| {
            id.starts_with("bind.tcp.") && id.contains(".listening.a-ra-rp.b-ra.")
        });
        let d = describe(&universe, &chosen);
        assert_eq!(
            d.text, "A listening, A with SO_REUSEADDR+SO_REUSEPORT, B with SO_REUSEADDR only",
            "{d:?}"
        );
    }

    #[test]
    fn a_set_of_option_values_is_named_by_the_option_they_share() {
        let cells = bind_cells();
        let universe: Vec<&Experiment> = cells.iter().collect();
        // Every UDP cell where both sockets set SO_REUSEPORT, with or without SO_REUSEADDR.
        let chosen = chosen_by(&cells, |id| {
            id.starts_with("bind.udp.")
                && (id.contains(".a-rp.") || id.contains(".a-ra-rp."))
                && (id.contains(".b-rp.") || id.contains(".b-ra-rp."))
        });
        let d = describe(&universe, &chosen);
        assert_eq!(
            d.text, "UDP, A with SO_REUSEPORT, B with SO_REUSEPORT",
            "{d:?}"
        );
    }

    #[test]
    fn a_coarse_dimension_stays_and_the_addresses_it_implies_go() {
        let cells = bind_cells();
        let universe: Vec<&Experiment> = cells.iter().collect();
        let chosen: BTreeSet<String> = cells
            .iter()
            .filter(|e| match e {
                Experiment::Bind(c) => {
                    c.a.is_wildcard()
                        && !c.b.is_wildcard()
                        && c.first == wire::catalogue::FirstState::Listening
                }
                _ => false,
            })
            .map(|e| e.id())
            .collect();
        let d = describe(&universe, &chosen);
        assert_eq!(
            d.text,
            "A on a wildcard, B on a specific address, A listening"
        );
    }

    #[test]
    fn an_irregular_choice_is_covered_exactly_by_several_boxes() {
        let cells = bind_cells();
        let universe: Vec<&Experiment> = cells.iter().collect();
        let chosen = chosen_by(&cells, |id| {
            (id.starts_with("bind.tcp.v4lo+v4lo.bound.") && id.ends_with(".other-uid"))
                || id == "bind.udp.v6any+v6lo.connected.a-none.b-ra.same-uid"
        });
        let d = describe(&universe, &chosen);
        assert_eq!(d.boxes.len(), 2, "{d:?}");
        // Exactness: every box's members are chosen, and every chosen cell is in a box.
        for e in &universe {
            let in_box = d.boxes.iter().any(|b| {
                b.iter().all(|(name, values)| {
                    e.dimensions()
                        .iter()
                        .any(|dim| dim.name == name && values.contains(&dim.value))
                })
            });
            assert_eq!(in_box, chosen.contains(&e.id()), "{}", e.id());
        }
    }
}
