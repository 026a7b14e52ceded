//! The syntax tree of IDL files: what was written, with where it was written.
//!
//! The parser builds it, the checker validates it, the formatter prints it
//! back. Every node keeps its [`Span`]; spans compare equal (see [`Span`]), so
//! `==` on nodes compares content only.

use crate::source::Span;

/// A name as written, with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    /// The text.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

/// An integer literal; the value range is checked by the parser (it fits in
/// an `i64` or a `u64`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Int {
    /// The value.
    pub value: i128,
    /// The digits as written (`0x4b564d01`), kept so that `pvi fmt` does not
    /// turn hex into decimal.
    pub text: String,
    /// Where it was written.
    pub span: Span,
}

/// A string literal after escape processing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Str {
    /// The decoded bytes.
    pub value: Vec<u8>,
    /// Where it was written, quotes included.
    pub span: Span,
}

/// A dotted version number such as `0.1.0` or `3.10`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// The numeric parts, most significant first.
    pub parts: Vec<u64>,
    /// The text as written.
    pub text: String,
    /// Where it was written.
    pub span: Span,
}

/// Doc comments (`///` or `//!`), one entry per line, the leading space
/// removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Docs {
    /// The lines.
    pub lines: Vec<String>,
}

impl Docs {
    /// The doc text as one string, lines joined by newlines.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The first line, for one-line summaries.
    pub fn summary(&self) -> &str {
        self.lines.first().map(String::as_str).unwrap_or("")
    }

    /// The first sentence, which may span lines.
    pub fn first_sentence(&self) -> String {
        let text = self.lines.join(" ");
        match text.find(". ") {
            Some(end) => text[..=end].to_string(),
            None => text,
        }
    }
}

/// One argument of an attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttrArg {
    /// `0.1.0`
    Version(Version),
    /// `42`
    Int(Int),
    /// `"text"`
    Str(Str),
    /// `name`
    Ident(Ident),
}

impl AttrArg {
    /// Where the argument was written.
    pub fn span(&self) -> Span {
        match self {
            AttrArg::Version(v) => v.span,
            AttrArg::Int(i) => i.span,
            AttrArg::Str(s) => s.span,
            AttrArg::Ident(i) => i.span,
        }
    }
}

/// `@name(args)` before an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// The attribute name, without `@`.
    pub name: Ident,
    /// Its arguments.
    pub args: Vec<AttrArg>,
    /// The whole attribute.
    pub span: Span,
}

/// Docs and attributes: what every declaration may carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Doc comment.
    pub docs: Docs,
    /// Attributes in source order.
    pub attrs: Vec<Attr>,
}

/// One `.pvi` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// The `//!` doc at the top.
    pub docs: Docs,
    /// Top-level items in source order.
    pub items: Vec<Item>,
}

/// A top-level declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// `interface NAME VERSION;`
    Interface(Interface),
    /// `unit NAME [= FACTOR BASE];`
    Unit(UnitDecl),
    /// `newtype`, `flags`, `enum` or `struct`.
    Type(TypeDecl),
    /// `errors { … }`
    Errors(ErrorsDecl),
    /// `group NAME { op … }`
    Group(Group),
    /// `hypervisor NAME "DISPLAY" { … }`
    Hypervisor(Hypervisor),
}

impl Item {
    /// Where the item was written (its docs and attributes excluded).
    pub fn span(&self) -> Span {
        match self {
            Item::Interface(i) => i.span,
            Item::Unit(u) => u.span,
            Item::Type(t) => t.span(),
            Item::Errors(e) => e.span,
            Item::Group(g) => g.span,
            Item::Hypervisor(h) => h.span,
        }
    }
}

/// `interface pvi 0.1.0;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Docs and attributes.
    pub meta: Meta,
    /// Interface name.
    pub name: Ident,
    /// Semantic version of the whole interface.
    pub version: Version,
    /// The whole declaration.
    pub span: Span,
}

/// `unit ns100 = 100 ns;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitDecl {
    /// Docs and attributes.
    pub meta: Meta,
    /// Unit name.
    pub name: Ident,
    /// `Some((factor, base))` for a scaled unit.
    pub scale: Option<(Int, Ident)>,
    /// The whole declaration.
    pub span: Span,
}

/// A reference to a type: `u64`, `Nanos`, `u64 in ns100`, `[u8; 2]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeRef {
    /// A named type, possibly with an inline unit.
    Named {
        /// The type name.
        name: Ident,
        /// `in UNIT`, allowed on primitives only.
        unit: Option<Ident>,
        /// The whole reference.
        span: Span,
    },
    /// `[T; N]`
    Array {
        /// Element type.
        elem: Box<TypeRef>,
        /// Element count.
        len: Int,
        /// The whole reference.
        span: Span,
    },
}

impl TypeRef {
    /// Where the type was written.
    pub fn span(&self) -> Span {
        match self {
            TypeRef::Named { span, .. } | TypeRef::Array { span, .. } => *span,
        }
    }
}

/// A type declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeDecl {
    /// `newtype Nanos: u64 in ns;`
    Newtype(Newtype),
    /// `flags IrqFlags: u64 { IF = 9; }`
    Flags(Enumeration),
    /// `enum ShutdownReason: u32 { poweroff = 0; }`
    Enum(Enumeration),
    /// `struct NAME size N { field: T @ off; }`
    Struct(Struct),
}

impl TypeDecl {
    /// The declared name.
    pub fn name(&self) -> &Ident {
        match self {
            TypeDecl::Newtype(n) => &n.name,
            TypeDecl::Flags(e) | TypeDecl::Enum(e) => &e.name,
            TypeDecl::Struct(s) => &s.name,
        }
    }

    /// Where the declaration was written.
    pub fn span(&self) -> Span {
        match self {
            TypeDecl::Newtype(n) => n.span,
            TypeDecl::Flags(e) | TypeDecl::Enum(e) => e.span,
            TypeDecl::Struct(s) => s.span,
        }
    }

    /// Docs and attributes.
    pub fn meta(&self) -> &Meta {
        match self {
            TypeDecl::Newtype(n) => &n.meta,
            TypeDecl::Flags(e) | TypeDecl::Enum(e) => &e.meta,
            TypeDecl::Struct(s) => &s.meta,
        }
    }
}

/// `newtype NAME: TYPE;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Newtype {
    /// Docs and attributes.
    pub meta: Meta,
    /// Type name.
    pub name: Ident,
    /// The represented type, usually a primitive with a unit.
    pub repr: TypeRef,
    /// The whole declaration.
    pub span: Span,
}

/// The body of `flags` (members are bit positions) and `enum` (members are
/// values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enumeration {
    /// Docs and attributes.
    pub meta: Meta,
    /// Type name.
    pub name: Ident,
    /// The primitive it is stored in.
    pub repr: Ident,
    /// Members in source order.
    pub members: Vec<Member>,
    /// The whole declaration.
    pub span: Span,
}

/// `NAME = VALUE;` inside `flags`, `enum` or `features`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Docs and attributes.
    pub meta: Meta,
    /// Member name.
    pub name: Ident,
    /// Its value or bit position.
    pub value: Int,
    /// The whole member.
    pub span: Span,
}

/// A shared-memory structure with explicit layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Struct {
    /// Docs and attributes.
    pub meta: Meta,
    /// `packed`: fields need not be naturally aligned.
    pub packed: bool,
    /// Structure name (the upstream C name).
    pub name: Ident,
    /// Declared size in bytes.
    pub size: Int,
    /// Fields in source order.
    pub fields: Vec<Field>,
    /// The whole declaration.
    pub span: Span,
}

/// `name: TYPE @ OFFSET;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Docs and attributes.
    pub meta: Meta,
    /// Field name.
    pub name: Ident,
    /// Field type.
    pub ty: TypeRef,
    /// Byte offset from the start of the structure.
    pub offset: Int,
    /// The whole field.
    pub span: Span,
}

/// `errors { kind; … }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorsDecl {
    /// Docs and attributes.
    pub meta: Meta,
    /// The error kinds.
    pub kinds: Vec<ErrorKind>,
    /// The whole declaration.
    pub span: Span,
}

/// One hypervisor-neutral error kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorKind {
    /// Docs and attributes.
    pub meta: Meta,
    /// Kind name.
    pub name: Ident,
    /// The whole declaration.
    pub span: Span,
}

/// `group NAME { op … }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Docs and attributes.
    pub meta: Meta,
    /// Group name.
    pub name: Ident,
    /// Ops in source order.
    pub ops: Vec<Op>,
    /// The whole group.
    pub span: Span,
}

/// A named, typed parameter (of an op, a hypercall, or a named result).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Parameter name.
    pub name: Ident,
    /// Its type.
    pub ty: TypeRef,
}

/// An operation of the interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Docs (the native meaning) and attributes.
    pub meta: Meta,
    /// Op name.
    pub name: Ident,
    /// Parameters.
    pub params: Vec<Param>,
    /// Result type, if any.
    pub result: Option<TypeRef>,
    /// Body statements in source order.
    pub stmts: Vec<OpStmt>,
    /// The whole op.
    pub span: Span,
}

impl Op {
    /// Its `native` lowering, if it states one.
    pub fn native(&self) -> Option<&Native> {
        self.stmts.iter().find_map(|s| match s {
            OpStmt::Native(n, _) => Some(n),
            _ => None,
        })
    }

    /// Its `unsafe` contract, if it states one.
    pub fn safety(&self) -> Option<&Str> {
        self.stmts.iter().find_map(|s| match s {
            OpStmt::Unsafe(c, _) => Some(c),
            _ => None,
        })
    }

    /// Its `context`, if it states one.
    pub fn context(&self) -> Option<&str> {
        self.stmts.iter().find_map(|s| match s {
            OpStmt::Context(c, _) => Some(c.name.as_str()),
            _ => None,
        })
    }
}

/// A statement in an op body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpStmt {
    /// `hot;`
    Hot(Span),
    /// `required;`
    Required(Span),
    /// `unsafe "contract";`: what a caller must uphold.
    Unsafe(Str, Span),
    /// `context any;`
    Context(Ident, Span),
    /// `native asm "…";` or `native routine NAME;`
    Native(Native, Span),
    /// `errors a, b;`
    Errors(Vec<Ident>, Span),
}

impl OpStmt {
    /// Where the statement was written.
    pub fn span(&self) -> Span {
        match self {
            OpStmt::Hot(s) | OpStmt::Required(s) => *s,
            OpStmt::Context(_, s) | OpStmt::Native(_, s) | OpStmt::Errors(_, s) => *s,
            OpStmt::Unsafe(_, s) => *s,
        }
    }
}

/// How an op is carried out on bare metal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Native {
    /// Inline assembly; `{param}` and `{ret}` name operands.
    Asm(Str),
    /// A routine of the SDK's native backend, and the ops of the op set
    /// it serves that it reads (`uses clock_ns, tsc_hz`): a native timer
    /// converts a deadline in the clock of the backend it ends the chain
    /// of, which only that backend can read.
    Routine(Ident, Vec<Ident>),
}

/// `hypervisor NAME "DISPLAY" { … }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hypervisor {
    /// Docs and attributes.
    pub meta: Meta,
    /// Short name (module name in generated code).
    pub name: Ident,
    /// Human-readable name.
    pub display: Str,
    /// Declarations in source order.
    pub items: Vec<HvItem>,
    /// The declarations taken from the hypervisor its `abi` names (all but
    /// that one's `detect` and `map` items), filled in by the checker
    /// before it resolves anything; empty without `abi`.
    pub inherited: Vec<HvItem>,
    /// The whole block.
    pub span: Span,
}

impl Hypervisor {
    /// The hypervisor whose ABI this one takes (`abi NAME;`), if any.
    pub fn abi(&self) -> Option<&Ident> {
        self.items.iter().find_map(|i| match i {
            HvItem::Abi(a) => Some(&a.name),
            _ => None,
        })
    }

    /// Every declaration in scope: its own, then those its `abi` brings.
    /// What names resolve against; generators that declare items walk
    /// `items` alone, so that an inherited item is declared once, by its
    /// owner.
    pub fn all_items(&self) -> impl Iterator<Item = &HvItem> {
        self.items.iter().chain(&self.inherited)
    }
}

/// `abi NAME;`: the hypervisor takes NAME's ABI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbiRef {
    /// Docs and attributes.
    pub meta: Meta,
    /// The hypervisor whose ABI it is.
    pub name: Ident,
    /// The statement.
    pub span: Span,
}

/// A declaration inside a hypervisor block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HvItem {
    /// `abi NAME;`
    Abi(AbiRef),
    /// `detect { … }`
    Detect(Detect),
    /// `convention { … }`
    Convention(Convention),
    /// `leaf NAME = ADDRESS;`
    Leaf(Leaf),
    /// `features NAME: LEAF.REG { … }`
    Features(Features),
    /// `msr NAME = INDEX …;`
    Msr(Msr),
    /// `const NAME: TYPE = VALUE;`
    Const(Const),
    /// `hypercall NAME = NUMBER (…) …;`
    Hypercall(Hypercall),
    /// `error NAME = CODE => KIND;`
    Error(HvError),
    /// `map OP { … }`
    Map(Map),
    /// A type declared in the hypervisor's namespace.
    Type(TypeDecl),
}

impl HvItem {
    /// Where the declaration was written.
    pub fn span(&self) -> Span {
        match self {
            HvItem::Abi(a) => a.span,
            HvItem::Detect(d) => d.span,
            HvItem::Convention(c) => c.span,
            HvItem::Leaf(l) => l.span,
            HvItem::Features(f) => f.span,
            HvItem::Msr(m) => m.span,
            HvItem::Const(c) => c.span,
            HvItem::Hypercall(h) => h.span,
            HvItem::Error(e) => e.span,
            HvItem::Map(m) => m.span,
            HvItem::Type(t) => t.span(),
        }
    }
}

/// `detect { signature "…"; probe backdoor; }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detect {
    /// Docs and attributes.
    pub meta: Meta,
    /// The CPUID signature, if any.
    pub signatures: Vec<Str>,
    /// Probes to try when CPUID says nothing.
    pub probes: Vec<Ident>,
    /// ELF-note constants whose entry point, when the kernel entered
    /// through it, says this is the hypervisor.
    pub entries: Vec<Ident>,
    /// The whole block.
    pub span: Span,
}

/// `convention { … }`: how a hypercall is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Convention {
    /// Docs and attributes.
    pub meta: Meta,
    /// Statements in source order.
    pub stmts: Vec<ConvStmt>,
    /// The whole block.
    pub span: Span,
}

/// A statement of a calling convention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConvStmt {
    /// `instruction vmcall | vmmcall;`
    Instruction(Vec<Ident>, Span),
    /// `page REF stride N;`
    Page(Path, Int, Span),
    /// `number REG;`
    Number(Ident, Span),
    /// `args REG, …;`
    Args(Vec<Ident>, Span),
    /// `result REG, …;`
    Result(Vec<Ident>, Span),
    /// `fixed REG = VALUE [when FORM], …;`
    Fixed(Vec<FixedReg>, Span),
    /// `clobbers REG, …;`
    Clobbers(Vec<Ident>, Span),
    /// `fast_bit N;`
    FastBit(Int, Span),
    /// `rep_shift N;`
    RepShift(Int, Span),
    /// `status KIND;`
    Status(Ident, Span),
    /// `choose FORM when vendor "…" | "…", FORM when FEATURE_BIT;`: which
    /// of the `instruction` forms this CPU uses, the first rule that holds
    /// deciding (none: the first form listed).
    Choose(Vec<Choice>, Span),
}

/// One rule of a convention's `choose`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The instruction form chosen.
    pub form: Ident,
    /// When.
    pub when: ChoiceCond,
}

/// What decides a [`Choice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChoiceCond {
    /// The CPU's vendor string (CPUID leaf 0: ebx, edx, ecx) is one of these.
    Vendor(Vec<Str>),
    /// This hypervisor announces the feature bit.
    Feature(Ident),
}

impl ConvStmt {
    /// Where the statement was written.
    pub fn span(&self) -> Span {
        match self {
            ConvStmt::Instruction(_, s)
            | ConvStmt::Page(_, _, s)
            | ConvStmt::Number(_, s)
            | ConvStmt::Args(_, s)
            | ConvStmt::Result(_, s)
            | ConvStmt::Fixed(_, s)
            | ConvStmt::Clobbers(_, s)
            | ConvStmt::FastBit(_, s)
            | ConvStmt::RepShift(_, s)
            | ConvStmt::Status(_, s)
            | ConvStmt::Choose(_, s) => *s,
        }
    }

    /// The statement's keyword, for messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            ConvStmt::Instruction(..) => "instruction",
            ConvStmt::Page(..) => "page",
            ConvStmt::Number(..) => "number",
            ConvStmt::Args(..) => "args",
            ConvStmt::Result(..) => "result",
            ConvStmt::Fixed(..) => "fixed",
            ConvStmt::Clobbers(..) => "clobbers",
            ConvStmt::FastBit(..) => "fast_bit",
            ConvStmt::RepShift(..) => "rep_shift",
            ConvStmt::Status(..) => "status",
            ConvStmt::Choose(..) => "choose",
        }
    }
}

/// `REG = VALUE [when FORM]` in a convention's `fixed` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedReg {
    /// The register.
    pub reg: Ident,
    /// The value it is loaded with.
    pub value: Int,
    /// Only for this instruction form (the VMware port number is for `in`
    /// only), or for every form.
    pub form: Option<Ident>,
}

/// `NAME` or `NAME.member`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// The first name.
    pub base: Ident,
    /// The name after the dot.
    pub member: Option<Ident>,
    /// The whole path.
    pub span: Span,
}

/// `leaf NAME = ADDRESS;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Docs and attributes.
    pub meta: Meta,
    /// Upstream name.
    pub name: Ident,
    /// CPUID leaf address (at base 0x40000000).
    pub address: Int,
    /// What some of its registers hold, when that has a type or a unit.
    pub registers: Vec<LeafReg>,
    /// The whole declaration.
    pub span: Span,
}

/// `eax: u32 in khz;` inside a leaf: the meaning of one register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafReg {
    /// Docs and attributes.
    pub meta: Meta,
    /// `eax`, `ebx`, `ecx` or `edx`.
    pub name: Ident,
    /// What the register holds.
    pub ty: TypeRef,
    /// The whole declaration.
    pub span: Span,
}

/// `features NAME: LEAF.REG { FEATURE = BIT; … }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Features {
    /// Docs and attributes.
    pub meta: Meta,
    /// Name of the feature set.
    pub name: Ident,
    /// The leaf register holding the bits.
    pub register: Path,
    /// The feature bits.
    pub bits: Vec<Member>,
    /// The whole declaration.
    pub span: Span,
}

/// `msr NAME = INDEX [: TYPE] [requires …];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msr {
    /// Docs and attributes.
    pub meta: Meta,
    /// Upstream name.
    pub name: Ident,
    /// MSR index.
    pub index: Int,
    /// What the MSR holds, if it has a meaningful type.
    pub ty: Option<TypeRef>,
    /// Feature bits that announce it.
    pub requires: Vec<Ident>,
    /// The whole declaration.
    pub span: Span,
}

/// `const NAME: TYPE = VALUE;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Const {
    /// Docs and attributes.
    pub meta: Meta,
    /// Upstream name.
    pub name: Ident,
    /// Its type.
    pub ty: TypeRef,
    /// Its value.
    pub value: Int,
    /// The whole declaration.
    pub span: Span,
}

/// What a hypercall returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HcResult {
    /// One value in the first result register.
    Single(TypeRef),
    /// Several named values, one per result register.
    Named(Vec<Param>),
}

/// `hypercall NAME = NUMBER [fast] (PARAMS) [-> RESULT] [requires …];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hypercall {
    /// Docs and attributes.
    pub meta: Meta,
    /// Upstream name.
    pub name: Ident,
    /// Call number (or command number).
    pub number: Int,
    /// Hyper-V register-only ("fast") call.
    pub fast: bool,
    /// A rep call: the wrapper takes a rep count, placed in the control word
    /// at the convention's `rep_shift`.
    pub rep: bool,
    /// Parameters in argument-register order.
    pub params: Vec<Param>,
    /// Result.
    pub result: Option<HcResult>,
    /// Feature bits that announce it.
    pub requires: Vec<Ident>,
    /// The whole declaration.
    pub span: Span,
}

/// `error NAME = CODE => KIND;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HvError {
    /// Docs and attributes.
    pub meta: Meta,
    /// Upstream name.
    pub name: Ident,
    /// The code as the upstream header defines it.
    pub code: Int,
    /// The pvi error kind it means.
    pub kind: Ident,
    /// The whole declaration.
    pub span: Span,
}

/// `map OP { STEP; … }`, or `map OP like HV;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Map {
    /// Docs and attributes.
    pub meta: Meta,
    /// The op being mapped.
    pub op: Ident,
    /// The fallback chain (for `like`, the other hypervisor's, copied in
    /// by the checker).
    pub steps: Vec<Step>,
    /// `like HV`: the hypervisor whose chain for the op this one is.
    pub like: Option<Ident>,
    /// `inline "ASM";`: the instructions a patched site of this hot op
    /// becomes (every one written, in order; the checker allows one).
    pub inline: Vec<Str>,
    /// The whole declaration.
    pub span: Span,
}

/// `when PARAM == VARIANT`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    /// The enum parameter.
    pub param: Ident,
    /// The variant it must equal.
    pub variant: Ident,
}

/// One step of a fallback chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What the step does.
    pub kind: StepKind,
    /// Feature bits the step needs.
    pub requires: Vec<Ident>,
    /// The step applies only when this holds.
    pub guard: Option<Guard>,
    /// The whole step.
    pub span: Span,
}

/// The mechanism of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// `hypercall NAME(ARGS)`
    Hypercall(Ident, Vec<Expr>),
    /// `msr NAME = VALUE`
    MsrWrite(Ident, Expr),
    /// `msr NAME [as UNIT]`
    MsrRead(Ident, Option<Ident>),
    /// `shared STRUCT[.FIELD] [as UNIT] via REF` or `… from platform`
    Shared(Path, Option<Ident>, Source),
    /// `cpuid LEAF.REG [as UNIT]`
    Cpuid(Path, Option<Ident>),
    /// `routine NAME`: a method of the backend's own, for what the IDL
    /// cannot say.
    Routine(Ident),
    /// `nop`
    Nop,
    /// `native`
    Native,
}

/// Where a shared structure's address comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `via NAME`: the guest registers it through this MSR or hypercall.
    Via(Ident),
    /// `from platform`: the platform supplies it (configured, as Jailhouse
    /// maps its communication region), nothing registers it.
    Platform(Span),
}

impl StepKind {
    /// The step's keyword, for messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            StepKind::Hypercall(..) => "hypercall",
            StepKind::MsrWrite(..) | StepKind::MsrRead(..) => "msr",
            StepKind::Shared(..) => "shared",
            StepKind::Cpuid(..) => "cpuid",
            StepKind::Routine(..) => "routine",
            StepKind::Nop => "nop",
            StepKind::Native => "native",
        }
    }
}

/// A value passed to a hypercall or written to an MSR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// An integer.
    Int(Int),
    /// An op parameter, a constant or `this_cpu`.
    Name(Ident),
    /// `PARAM.len` or `PARAM.ptr`.
    Member(Ident, Ident, Span),
    /// `STRUCT { FIELD: VALUE, … }`, passed by address.
    Struct(Ident, Vec<(Ident, Expr)>, Span),
    /// `VALUE as UNIT`
    As(Box<Expr>, Ident, Span),
    /// `each PARAM`: the step runs once per byte of the `bytes` parameter,
    /// passing the byte.
    Each(Ident, Span),
}

impl Expr {
    /// Where the expression was written.
    pub fn span(&self) -> Span {
        match self {
            Expr::Int(i) => i.span,
            Expr::Name(n) => n.span,
            Expr::Member(_, _, s)
            | Expr::Struct(_, _, s)
            | Expr::As(_, _, s)
            | Expr::Each(_, s) => *s,
        }
    }
}
