//! `pvi compat OLD NEW`: every difference between two versions of an
//! interface, classified by a rule as breaking (a guest built for OLD can
//! misbehave against NEW), compatible (it cannot), or docs-only.
//!
//! Gerd Hoffmann's rule, enforced: a new mechanism is a new item with an
//! `@since`, which old guests never call; changing a released one breaks
//! them, and is allowed only with a major version bump.

use crate::abi::{Abi, Fact, Kind};
use crate::source::Span;
use std::collections::{BTreeMap, BTreeSet};

/// How a change affects guests built for the old version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// A guest built for OLD can misbehave against NEW.
    Breaking,
    /// Guests built for OLD work against NEW unchanged.
    Compatible,
    /// Only documentation changed.
    DocsOnly,
}

impl Class {
    /// The word reports use.
    pub fn word(self) -> &'static str {
        match self {
            Class::Breaking => "breaking",
            Class::Compatible => "compatible",
            Class::DocsOnly => "docs-only",
        }
    }
}

/// One classified difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The rule it falls under (`number-changed`, `op-removed`, …).
    pub rule: &'static str,
    /// What it means for old guests.
    pub class: Class,
    /// The fact it concerns.
    pub key: String,
    /// The fact in OLD, if there.
    pub old: Option<Fact>,
    /// The fact in NEW, if there.
    pub new: Option<Fact>,
    /// One sentence saying what changed.
    pub message: String,
}

impl Change {
    /// Where to point in NEW (or OLD, for a removal).
    pub fn span(&self) -> Span {
        self.new
            .as_ref()
            .or(self.old.as_ref())
            .map(|f| f.span)
            .expect("a change has a side")
    }
}

/// Every rule, with its class and what it means: the reference the book
/// and `pvi compat --rules` print.
pub const RULES: &[(&str, Class, &str)] = &[
    ("op-removed", Class::Breaking, "an op is gone"),
    (
        "param-added",
        Class::Breaking,
        "an op takes another parameter",
    ),
    (
        "param-removed",
        Class::Breaking,
        "an op takes one parameter fewer",
    ),
    (
        "param-type-changed",
        Class::Breaking,
        "a parameter has another type",
    ),
    (
        "result-type-changed",
        Class::Breaking,
        "an op returns another type (or none, or one now)",
    ),
    (
        "unit-changed",
        Class::Breaking,
        "a value is in another unit, or a unit's scale changed",
    ),
    (
        "context-changed",
        Class::Breaking,
        "an op may be called in other contexts",
    ),
    (
        "errors-widened",
        Class::Breaking,
        "an op may return an error kind it could not before",
    ),
    (
        "errors-changed",
        Class::Breaking,
        "an op's error kinds changed",
    ),
    ("type-removed", Class::Breaking, "a type is gone"),
    (
        "type-changed",
        Class::Breaking,
        "a type wraps or is represented by another type",
    ),
    (
        "member-removed",
        Class::Breaking,
        "an enum or flags member is gone",
    ),
    (
        "struct-layout-changed",
        Class::Breaking,
        "a structure's size, packing, or a field's type or offset changed, or a field is gone",
    ),
    (
        "error-kind-removed",
        Class::Breaking,
        "an error kind is gone",
    ),
    ("unit-removed", Class::Breaking, "a unit is gone"),
    (
        "number-changed",
        Class::Breaking,
        "a hypercall, MSR, leaf, feature bit, constant, member or error code has another number",
    ),
    (
        "hypervisor-removed",
        Class::Breaking,
        "a hypervisor ABI is gone",
    ),
    (
        "detection-changed",
        Class::Breaking,
        "a hypervisor is detected differently",
    ),
    (
        "convention-changed",
        Class::Breaking,
        "hypercalls are made differently",
    ),
    ("leaf-removed", Class::Breaking, "a CPUID leaf is gone"),
    (
        "leaf-register-changed",
        Class::Breaking,
        "a leaf register holds another type",
    ),
    (
        "feature-register-changed",
        Class::Breaking,
        "a feature set moved to another leaf register",
    ),
    ("feature-removed", Class::Breaking, "a feature bit is gone"),
    ("msr-removed", Class::Breaking, "an MSR is gone"),
    (
        "msr-type-changed",
        Class::Breaking,
        "an MSR holds another type, or other features announce it",
    ),
    ("constant-removed", Class::Breaking, "a constant is gone"),
    ("hypercall-removed", Class::Breaking, "a hypercall is gone"),
    (
        "hypercall-signature-changed",
        Class::Breaking,
        "a hypercall's arguments, result, flavour or announcing features changed",
    ),
    (
        "error-code-removed",
        Class::Breaking,
        "a hypervisor error code is gone",
    ),
    (
        "error-mapping-changed",
        Class::Breaking,
        "a hypervisor error code maps to another pvi error kind",
    ),
    (
        "mapping-removed",
        Class::Breaking,
        "a hypervisor no longer maps an op",
    ),
    (
        "mapping-changed",
        Class::Breaking,
        "a mapping's steps changed other than by adding one",
    ),
    (
        "since-missing",
        Class::Breaking,
        "a new item has no `@since`, so guests of the old version would see it",
    ),
    (
        "since-changed",
        Class::Breaking,
        "an item's `@since` changed",
    ),
    ("op-added", Class::Compatible, "a new op, with `@since`"),
    (
        "param-renamed",
        Class::Compatible,
        "a parameter has another name, same type",
    ),
    (
        "errors-narrowed",
        Class::Compatible,
        "an op returns fewer error kinds",
    ),
    (
        "hot-changed",
        Class::Compatible,
        "an op became hot or stopped being hot",
    ),
    ("type-added", Class::Compatible, "a new type, with `@since`"),
    (
        "member-added",
        Class::Compatible,
        "a new enum or flags member",
    ),
    (
        "field-added",
        Class::Compatible,
        "a new field in a structure's unused bytes",
    ),
    (
        "error-kind-added",
        Class::Compatible,
        "a new error kind, with `@since`",
    ),
    ("unit-added", Class::Compatible, "a new unit"),
    (
        "hypervisor-added",
        Class::Compatible,
        "a new hypervisor ABI",
    ),
    (
        "hypervisor-renamed",
        Class::Compatible,
        "a hypervisor's display name changed",
    ),
    (
        "leaf-added",
        Class::Compatible,
        "a new CPUID leaf, with `@since`",
    ),
    (
        "leaf-register-added",
        Class::Compatible,
        "a leaf register gets a meaning",
    ),
    ("feature-added", Class::Compatible, "a new feature bit"),
    ("msr-added", Class::Compatible, "a new MSR, with `@since`"),
    (
        "constant-added",
        Class::Compatible,
        "a new constant, with `@since`",
    ),
    (
        "hypercall-added",
        Class::Compatible,
        "a new hypercall, with `@since`",
    ),
    (
        "error-code-added",
        Class::Compatible,
        "a new hypervisor error code",
    ),
    (
        "mapping-added",
        Class::Compatible,
        "a hypervisor maps an op it did not",
    ),
    (
        "mapping-step-added",
        Class::Compatible,
        "a mapping gained a step, the old ones kept in order",
    ),
    (
        "deprecated",
        Class::Compatible,
        "an item is marked `@deprecated`",
    ),
    (
        "docs-changed",
        Class::DocsOnly,
        "only an item's documentation changed",
    ),
];

fn class_of(rule: &str) -> Class {
    RULES
        .iter()
        .find(|(r, _, _)| *r == rule)
        .map(|(_, c, _)| *c)
        .unwrap_or(Class::Breaking)
}

/// Kinds whose new facts are items in their own right (and need an
/// `@since`), as opposed to parts of an item.
fn is_item(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Unit
            | Kind::Newtype
            | Kind::Enum
            | Kind::Struct
            | Kind::ErrorKind
            | Kind::Op
            | Kind::Leaf
            | Kind::Msr
            | Kind::Const
            | Kind::Hypercall
    )
}

fn removed_rule(kind: Kind) -> &'static str {
    match kind {
        Kind::Unit => "unit-removed",
        Kind::Newtype | Kind::Enum | Kind::Struct => "type-removed",
        Kind::Member => "member-removed",
        Kind::Field => "struct-layout-changed",
        Kind::ErrorKind => "error-kind-removed",
        Kind::Op => "op-removed",
        Kind::Param => "param-removed",
        Kind::Result => "result-type-changed",
        Kind::Context => "context-changed",
        Kind::Errors => "errors-changed",
        Kind::Hot => "hot-changed",
        Kind::Hypervisor => "hypervisor-removed",
        Kind::Detect => "detection-changed",
        Kind::Convention => "convention-changed",
        Kind::Leaf => "leaf-removed",
        Kind::LeafRegister => "leaf-register-changed",
        Kind::FeatureSet => "feature-register-changed",
        Kind::Feature => "feature-removed",
        Kind::Msr => "msr-removed",
        Kind::MsrType => "msr-type-changed",
        Kind::Const => "constant-removed",
        Kind::Hypercall => "hypercall-removed",
        Kind::HypercallSignature => "hypercall-signature-changed",
        Kind::HvError => "error-code-removed",
        Kind::Mapping => "mapping-removed",
    }
}

fn added_rule(kind: Kind) -> &'static str {
    match kind {
        Kind::Unit => "unit-added",
        Kind::Newtype | Kind::Enum | Kind::Struct => "type-added",
        Kind::Member => "member-added",
        Kind::Field => "field-added",
        Kind::ErrorKind => "error-kind-added",
        Kind::Op => "op-added",
        Kind::Param => "param-added",
        Kind::Result => "result-type-changed",
        Kind::Context => "context-changed",
        Kind::Errors => "errors-widened",
        Kind::Hot => "hot-changed",
        Kind::Hypervisor => "hypervisor-added",
        Kind::Detect => "detection-changed",
        Kind::Convention => "convention-changed",
        Kind::Leaf => "leaf-added",
        Kind::LeafRegister => "leaf-register-added",
        Kind::FeatureSet => "feature-added",
        Kind::Feature => "feature-added",
        Kind::Msr => "msr-added",
        Kind::MsrType => "msr-type-changed",
        Kind::Const => "constant-added",
        Kind::Hypercall => "hypercall-added",
        Kind::HypercallSignature => "hypercall-signature-changed",
        Kind::HvError => "error-code-added",
        Kind::Mapping => "mapping-added",
    }
}

/// `T in UNIT` split into the type and the unit.
fn type_and_unit(value: &str) -> (&str, Option<&str>) {
    match value.split_once(" in ") {
        Some((t, rest)) => (t, Some(rest.split(" @ ").next().unwrap_or(rest))),
        None => (value.split(" @ ").next().unwrap_or(value), None),
    }
}

/// The rule for a fact whose value changed.
fn changed_rule(kind: Kind, old: &str, new: &str) -> &'static str {
    match kind {
        Kind::Unit => "unit-changed",
        Kind::Newtype if unit_only(old, new) => "unit-changed",
        Kind::Newtype | Kind::Enum => "type-changed",
        Kind::Member | Kind::Leaf | Kind::Feature | Kind::Msr | Kind::Hypercall => "number-changed",
        Kind::Const => {
            let number = |v: &str| v.split(':').next().map(str::to_string);
            if number(old) != number(new) {
                "number-changed"
            } else {
                "type-changed"
            }
        }
        Kind::Struct => "struct-layout-changed",
        Kind::Field if unit_only(old, new) => "unit-changed",
        Kind::Field => "struct-layout-changed",
        Kind::ErrorKind => "docs-changed",
        // An op's fact has no value (its id is the lock's): nothing changes.
        Kind::Op => "docs-changed",
        Kind::Param => {
            let (on, ot) = old.split_once(": ").unwrap_or(("", old));
            let (nn, nt) = new.split_once(": ").unwrap_or(("", new));
            if ot == nt && on != nn {
                "param-renamed"
            } else if unit_only(ot, nt) {
                "unit-changed"
            } else {
                "param-type-changed"
            }
        }
        Kind::Result if unit_only(old, new) => "unit-changed",
        Kind::Result => "result-type-changed",
        Kind::Context => "context-changed",
        Kind::Errors => {
            let set = |v: &str| -> BTreeSet<String> {
                v.split(", ")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            };
            let (o, n) = (set(old), set(new));
            if n.is_subset(&o) {
                "errors-narrowed"
            } else if o.is_subset(&n) {
                "errors-widened"
            } else {
                "errors-changed"
            }
        }
        Kind::Hot => "hot-changed",
        Kind::Hypervisor => "hypervisor-renamed",
        Kind::Detect => "detection-changed",
        Kind::Convention => "convention-changed",
        Kind::LeafRegister if unit_only(old, new) => "unit-changed",
        Kind::LeafRegister => "leaf-register-changed",
        Kind::FeatureSet => "feature-register-changed",
        Kind::MsrType if unit_only(old, new) => "unit-changed",
        Kind::MsrType => "msr-type-changed",
        Kind::HypercallSignature => "hypercall-signature-changed",
        Kind::HvError => {
            let code = |v: &str| v.split(" => ").next().map(str::to_string);
            if code(old) != code(new) {
                "number-changed"
            } else {
                "error-mapping-changed"
            }
        }
        Kind::Mapping => {
            if is_subsequence(&steps(old), &steps(new)) {
                "mapping-step-added"
            } else {
                "mapping-changed"
            }
        }
    }
}

/// Whether two values (`T in UNIT`, perhaps `@ OFFSET`) differ only in
/// their unit.
fn unit_only(old: &str, new: &str) -> bool {
    let (ot, ou) = type_and_unit(old);
    let (nt, nu) = type_and_unit(new);
    let offset = |v: &str| v.split(" @ ").nth(1).map(str::to_string);
    ot == nt && ou != nu && offset(old) == offset(new)
}

fn steps(value: &str) -> Vec<&str> {
    value.split_inclusive(';').map(str::trim).collect()
}

fn is_subsequence(short: &[&str], long: &[&str]) -> bool {
    let mut it = long.iter();
    short.len() < long.len() && short.iter().all(|s| it.any(|l| l == s))
}

fn quote(value: &str) -> String {
    if value.is_empty() {
        "(present)".into()
    } else {
        format!("`{value}`")
    }
}

/// Every difference between `old` and `new`, classified, in NEW's order
/// (removals after, in OLD's order).
pub fn compare(old: &Abi, new: &Abi) -> Vec<Change> {
    let old_facts = &old.facts;
    let new_facts = &new.facts;
    let old_version = (
        old.version_parts.first().copied().unwrap_or(0),
        old.version_parts.get(1).copied().unwrap_or(0),
    );
    let old_by_key: BTreeMap<&str, &Fact> = old_facts.iter().map(|f| (f.key.as_str(), f)).collect();
    let new_keys: BTreeSet<&str> = new_facts.iter().map(|f| f.key.as_str()).collect();
    let mut out = Vec::new();
    let mut push = |rule: &'static str, old: Option<&Fact>, new: Option<&Fact>, message: String| {
        let key = new.or(old).map(|f| f.key.clone()).unwrap_or_default();
        out.push(Change {
            rule,
            class: class_of(rule),
            key,
            old: old.cloned(),
            new: new.cloned(),
            message,
        });
    };
    for n in new_facts {
        match old_by_key.get(n.key.as_str()) {
            None => {
                // Parts of a new item come with it, and so do the mappings
                // of a new op.
                let parent_is_new = n
                    .parent
                    .as_deref()
                    .is_some_and(|p| !old_by_key.contains_key(p))
                    || mapped_op(n).is_some_and(|op| !old_by_key.contains_key(op.as_str()));
                if parent_is_new {
                    continue;
                }
                let own_since = n.since.is_some_and(|s| s > old_version)
                    && n.since != old_since_of_parent(n, &old_by_key);
                if is_item(n.kind) && !own_since {
                    push(
                        "since-missing",
                        None,
                        Some(n),
                        format!(
                            "new {} `{}` has no `@since` of a version after {}",
                            n.kind.word(),
                            n.key,
                            old.version
                        ),
                    );
                } else {
                    push(
                        added_rule(n.kind),
                        None,
                        Some(n),
                        if n.value.is_empty() {
                            format!("new {} `{}`", n.kind.word(), n.key)
                        } else {
                            format!("new {} `{}` = `{}`", n.kind.word(), n.key, n.value)
                        },
                    );
                }
            }
            Some(o) => {
                if o.value != n.value {
                    push(
                        changed_rule(n.kind, &o.value, &n.value),
                        Some(o),
                        Some(n),
                        format!(
                            "{} `{}` was {}, is {}",
                            n.kind.word(),
                            n.key,
                            quote(&o.value),
                            quote(&n.value)
                        ),
                    );
                }
                if o.since != n.since {
                    let show = |v: Option<(u64, u64)>| {
                        v.map_or("none".to_string(), |(a, b)| format!("{a}.{b}"))
                    };
                    push(
                        "since-changed",
                        Some(o),
                        Some(n),
                        format!(
                            "`{}`: `@since` was {}, is {}",
                            n.key,
                            show(o.since),
                            show(n.since)
                        ),
                    );
                }
                if n.deprecated && !o.deprecated {
                    push(
                        "deprecated",
                        Some(o),
                        Some(n),
                        format!("`{}` is deprecated", n.key),
                    );
                }
                if o.docs.is_some() && n.docs.is_some() && o.docs != n.docs {
                    push(
                        "docs-changed",
                        Some(o),
                        Some(n),
                        format!("the documentation of `{}` changed", n.key),
                    );
                }
            }
        }
    }
    for o in old_facts {
        if new_keys.contains(o.key.as_str()) {
            continue;
        }
        // Parts of a removed item go with it, and so do the mappings of a
        // removed op.
        if o.parent.as_deref().is_some_and(|p| !new_keys.contains(p))
            || mapped_op(o).is_some_and(|op| !new_keys.contains(op.as_str()))
        {
            continue;
        }
        push(
            removed_rule(o.kind),
            Some(o),
            None,
            format!(
                "{} `{}` (was {}) is gone",
                o.kind.word(),
                o.key,
                quote(&o.value)
            ),
        );
    }
    out
}

/// The op key (`op NAME`) a mapping fact maps.
fn mapped_op(fact: &Fact) -> Option<String> {
    (fact.kind == Kind::Mapping)
        .then(|| fact.key.rsplit(' ').next().map(|op| format!("op {op}")))
        .flatten()
}

/// The `@since` a new fact would have inherited from a parent that OLD
/// already had, so that inheriting it is not mistaken for an own one.
fn old_since_of_parent(fact: &Fact, old: &BTreeMap<&str, &Fact>) -> Option<(u64, u64)> {
    fact.parent
        .as_deref()
        .and_then(|p| old.get(p))
        .and_then(|p| p.since)
}

/// A semver version's compatibility level, as Cargo reads it: the major
/// version, or for 0.x the minor (0.1 → 0.2 is a major step).
fn level(version: &[u64]) -> (u64, u64) {
    match version {
        [0, minor, ..] => (0, *minor),
        [major, ..] => (*major, 0),
        [] => (0, 0),
    }
}

/// The verdict on a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No breaking change.
    Compatible,
    /// Breaking changes, and the major version (for 0.x the minor) was
    /// bumped for them.
    BreakingWithMajorBump,
    /// Breaking changes without a major bump: old guests would break.
    Breaking,
}

/// What `changes` between `old` and `new` amount to.
pub fn verdict(old: &Abi, new: &Abi, changes: &[Change]) -> Verdict {
    if !changes.iter().any(|c| c.class == Class::Breaking) {
        Verdict::Compatible
    } else if level(&new.version_parts) > level(&old.version_parts) {
        Verdict::BreakingWithMajorBump
    } else {
        Verdict::Breaking
    }
}
