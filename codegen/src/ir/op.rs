//! The interface's ops, resolved: each with its id (its row of the
//! generated `OPS` and `Op`), its group, the context it may run in, its
//! flags, the errors it returns, its native lowering and the version it
//! arrived in. Made once, from checked `group` blocks; the chains'
//! generator, `pvi explain` and the reference pages read it instead of
//! scanning op statements again.

use crate::ast::{self, AttrArg, OpStmt};

/// Where an op may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Context {
    /// Anywhere, interrupt handlers included.
    Any,
    /// With interrupts off.
    IrqOff,
    /// In a task, where it may wait.
    Task,
    /// Once, at boot.
    Boot,
}

impl Context {
    /// Every context's name in the IDL, in declaration order: what the
    /// checker accepts.
    pub const NAMES: [&'static str; 4] = ["any", "irq_off", "task", "boot"];

    /// Its name in the IDL.
    pub fn name(self) -> &'static str {
        Context::NAMES[self as usize]
    }

    /// The context called `name`.
    pub fn named(name: &str) -> Option<Context> {
        [Context::Any, Context::IrqOff, Context::Task, Context::Boot]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// How an op is carried out on bare metal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lowering {
    /// Inline assembly: the template's text, unescaped.
    Asm(String),
    /// A native routine, and the ops of the serving backend it reads.
    Routine {
        /// The routine.
        name: String,
        /// The ops it `uses`.
        uses: Vec<String>,
    },
}

/// An op of the interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Its row: the generated `OPS[id]` and `Op` variant, in IDL order.
    pub id: usize,
    /// Its name.
    pub name: String,
    /// Its group.
    pub group: String,
    /// Where it may run.
    pub context: Context,
    /// Hot: no more than its native instruction.
    pub hot: bool,
    /// Every hypervisor must map it.
    pub required: bool,
    /// `unsafe`: what its caller must uphold; the op is an `unsafe fn`.
    pub safety: Option<String>,
    /// The error kinds it may return, as the IDL lists them.
    pub errors: Vec<String>,
    /// Its native lowering.
    pub lowering: Lowering,
    /// The interface version it arrived in (`@since`), as written, if
    /// stated.
    pub since: Option<String>,
    /// The op as written: its parameters, result type and docs.
    pub syntax: ast::Op,
}

impl Op {
    /// Whether it may fail: it lists error kinds.
    pub fn fallible(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// The ops of the checked `groups`, in IDL order.
pub fn ops_of<'g>(groups: impl Iterator<Item = &'g ast::Group>) -> Vec<Op> {
    groups
        .flat_map(|g| g.ops.iter().map(move |op| (g, op)))
        .enumerate()
        .map(|(id, (group, op))| resolve(id, group, op))
        .collect()
}

fn resolve(id: usize, group: &ast::Group, op: &ast::Op) -> Op {
    let has = |f: fn(&OpStmt) -> bool| op.stmts.iter().any(f);
    let lowering = match op.native() {
        Some(ast::Native::Asm(s)) => Lowering::Asm(String::from_utf8_lossy(&s.value).into_owned()),
        Some(ast::Native::Routine(r, uses)) => Lowering::Routine {
            name: r.name.clone(),
            uses: uses.iter().map(|u| u.name.clone()).collect(),
        },
        None => Lowering::Routine {
            name: String::new(),
            uses: Vec::new(),
        },
    };
    Op {
        id,
        name: op.name.name.clone(),
        group: group.name.name.clone(),
        context: op
            .context()
            .and_then(Context::named)
            .unwrap_or(Context::Any),
        hot: has(|s| matches!(s, OpStmt::Hot(_))),
        required: has(|s| matches!(s, OpStmt::Required(_))),
        safety: op
            .safety()
            .map(|c| String::from_utf8_lossy(&c.value).into_owned()),
        errors: op
            .stmts
            .iter()
            .flat_map(|s| match s {
                OpStmt::Errors(kinds, _) => kinds.iter().map(|k| k.name.clone()).collect(),
                _ => Vec::new(),
            })
            .collect(),
        lowering,
        since: op
            .meta
            .attrs
            .iter()
            .find(|a| a.name.name == "since")
            .and_then(|a| match a.args.first() {
                Some(AttrArg::Version(v)) => Some(v.text.clone()),
                _ => None,
            }),
        syntax: op.clone(),
    }
}
