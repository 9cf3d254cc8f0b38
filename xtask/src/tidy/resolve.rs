//! What tidy's source checks share: a crate's files parsed with `syn`, and
//! every path written in them resolved to what it names, as far as that can
//! be told without type information.
//!
//! Resolution follows the module tree from the crate roots (`mod x;` to
//! `x.rs` or `x/mod.rs`, `#[path]`, inline modules) and, in each module and
//! block, its `use` items (aliases, groups, `self` in a group, globs),
//! `type` aliases that name a path, `extern crate .. as ..` and
//! `crate::`/`self::`/`super::` paths through other modules' imports (a
//! re-export is followed). A name a glob may bring in is resolved through
//! every glob in scope (a local item of that name shadows them); so is a
//! name nothing in scope defines, and it is kept as written too (the extern
//! prelude). Where it cannot tell, it keeps every candidate: a check errs on
//! the strict side.
//!
//! Paths are found in items, types, expressions and patterns (also `<T>::f`
//! and `<T as Trait>::f`), and in macro bodies (`vec![..]`, `macro_rules!`)
//! by scanning their tokens for `a::b` sequences. Not seen: method-call
//! syntax (`t.elapsed()`: naming what it calls needs types) and code that a
//! macro or a build script generates.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use proc_macro2::{Delimiter, Spacing, Span, TokenStream, TokenTree};
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::{Attribute, Expr, ImplItem, Item, Meta, Stmt, TraitItem, Type, UseTree};

/// Path segments: `["std", "fs", "read"]`.
pub type Segs = Vec<String>;

/// Why a path is refused: the rule's name and the reason, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ban {
    pub rule: &'static str,
    pub why: &'static str,
}

/// One place that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// As written: `f::read`, `use std::fs as f`, `#[tokio::test]`.
    pub written: String,
    /// What it resolved to: `std::fs::read` (empty: as written).
    pub resolved: String,
    pub ban: Ban,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: `{}`",
            self.file.display(),
            self.line,
            self.column,
            self.written
        )?;
        if !self.resolved.is_empty() && self.resolved != self.written {
            write!(f, " (is `{}`)", self.resolved)?;
        }
        write!(f, ": rule {}: {}", self.ban.rule, self.ban.why)
    }
}

/// A test fixture's files, `(path, text)`.
#[cfg(test)]
pub type FixtureFiles = &'static [(&'static str, &'static str)];

/// The findings a fixture must make, `(file, line, rule)`.
#[cfg(test)]
pub type Expected = &'static [(&'static str, usize, Ban)];

/// What a check refuses.
pub trait Policy {
    /// Leave out `#[cfg(test)]` items and `#[test]` functions (a check of
    /// what ships, not of its tests).
    fn skip_tests(&self) -> bool;
    /// Whether a resolved path is refused; `glob` for `use path::*`.
    fn path(&self, resolved: &[String], glob: bool) -> Option<Ban>;
    /// An attribute on a function, with every path its own path may
    /// resolve to: a reason when it breaks a rule.
    fn fn_attr(&self, _attr: &Attribute, _resolved: &[Segs]) -> Option<Ban> {
        None
    }
}

/// Checks the crate(s) rooted at `roots` among `files` (path -> source),
/// then every file of `files` no root reached, each as a root of its own:
/// every file is looked at, and a file only a `#[cfg(test)]` module
/// declares counts as reached.
pub fn check(
    files: &BTreeMap<PathBuf, String>,
    roots: &[PathBuf],
    policy: &dyn Policy,
) -> Result<Vec<Finding>> {
    let mut krate = Crate {
        modules: Vec::new(),
        parsed: Vec::new(),
        reached: HashSet::new(),
        skip_tests: policy.skip_tests(),
    };
    for root in roots {
        krate.add_root(files, root, false)?;
    }
    let orphans: Vec<PathBuf> = files
        .keys()
        .filter(|f| !krate.reached.contains(*f))
        .cloned()
        .collect();
    for file in &orphans {
        if !krate.reached.contains(file) {
            krate.add_root(files, file, true)?;
        }
    }
    let mut out = BTreeSet::new();
    for (module, file) in &krate.parsed {
        let mut v = Checker {
            krate: &krate,
            policy,
            file: &krate.modules[*module].file,
            module: *module,
            blocks: Vec::new(),
            out: &mut out,
        };
        for item in &file.items {
            v.visit_item(item);
        }
    }
    Ok(out.into_iter().collect())
}

/// Is this `cfg(..)` predicate true only under `cfg(test)`? (`test`,
/// `all(test, ..)`; not `any(test, ..)` nor `not(..)`.)
fn cfg_implies_test(meta: &Meta) -> bool {
    match meta {
        Meta::Path(p) => p.is_ident("test"),
        Meta::List(l) if l.path.is_ident("all") => l
            .parse_args_with(Punctuated::<Meta, syn::Token![,]>::parse_terminated)
            .is_ok_and(|all| all.iter().any(cfg_implies_test)),
        _ => false,
    }
}

/// `#[cfg(test)]` (or `cfg(all(test, ..))`) or `#[test]`: test-only code.
fn is_test_only(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        if a.path().is_ident("test") {
            return true;
        }
        if !a.path().is_ident("cfg") {
            return false;
        }
        a.parse_args::<Meta>().is_ok_and(|m| cfg_implies_test(&m))
    })
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// The name an item defines in its module's namespace, if any.
fn item_name(item: &Item) -> Option<String> {
    let ident = match item {
        Item::Const(i) => &i.ident,
        Item::Enum(i) => &i.ident,
        Item::Fn(i) => &i.sig.ident,
        Item::Macro(i) => i.ident.as_ref()?,
        Item::Static(i) => &i.ident,
        Item::Struct(i) => &i.ident,
        Item::Trait(i) => &i.ident,
        Item::TraitAlias(i) => &i.ident,
        Item::Union(i) => &i.ident,
        _ => return None,
    };
    Some(ident.to_string())
}

/// A path as a `use` or a `type` alias wrote it.
#[derive(Debug, Clone)]
struct Raw {
    segs: Segs,
    /// `::std::fs`: an extern crate, whatever is in scope.
    leading: bool,
}

impl Raw {
    fn join(&self, rest: &[String]) -> Raw {
        let mut segs = self.segs.clone();
        segs.extend(rest.iter().cloned());
        Raw {
            segs,
            leading: self.leading,
        }
    }
}

/// What a module or a block brings into scope.
#[derive(Debug, Default)]
struct Scope {
    /// Imports, `type` aliases and renamed extern crates: name -> path.
    names: HashMap<String, Raw>,
    /// `use p::*`: the `p`s.
    globs: Vec<Raw>,
    /// Items defined here (they shadow globs).
    items: HashSet<String>,
}

impl Scope {
    fn add_item(&mut self, item: &Item, skip_tests: bool) {
        if skip_tests && is_test_only(item_attrs(item)) {
            return;
        }
        match item {
            Item::Use(u) => {
                for e in flatten_use(&u.tree, Vec::new(), u.leading_colon.is_some()) {
                    match e.bind {
                        Bind::Name(name) => {
                            self.names.insert(name, e.path);
                        }
                        Bind::Glob => self.globs.push(e.path),
                        Bind::Nothing => {}
                    }
                }
            }
            Item::Type(t) => {
                if let Type::Path(tp) = &*t.ty
                    && tp.qself.is_none()
                {
                    self.names.insert(t.ident.to_string(), raw_of(&tp.path));
                }
            }
            Item::ExternCrate(e) => {
                if let Some((_, rename)) = &e.rename {
                    self.names.insert(
                        rename.to_string(),
                        Raw {
                            segs: vec![e.ident.to_string()],
                            leading: true,
                        },
                    );
                }
            }
            _ => {
                if let Some(name) = item_name(item) {
                    self.items.insert(name);
                }
            }
        }
    }
}

fn raw_of(p: &syn::Path) -> Raw {
    Raw {
        segs: p.segments.iter().map(|s| s.ident.to_string()).collect(),
        leading: p.leading_colon.is_some(),
    }
}

enum Bind {
    Name(String),
    Glob,
    /// `use x as _;`
    Nothing,
}

/// One leaf of a `use` tree.
struct UseLeaf {
    bind: Bind,
    path: Raw,
    span: Span,
    written: String,
}

fn flatten_use(tree: &UseTree, prefix: Segs, leading: bool) -> Vec<UseLeaf> {
    let mut out = Vec::new();
    flatten_into(tree, prefix, leading, &mut out);
    out
}

fn flatten_into(tree: &UseTree, mut prefix: Segs, leading: bool, out: &mut Vec<UseLeaf>) {
    let written = |segs: &[String], tail: Option<&str>| {
        let mut s = format!("use {}{}", if leading { "::" } else { "" }, segs.join("::"));
        if let Some(t) = tail {
            s.push_str(t);
        }
        s
    };
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_into(&p.tree, prefix, leading, out);
        }
        UseTree::Name(n) => {
            // `use a::{self}` imports `a` itself.
            if n.ident != "self" {
                prefix.push(n.ident.to_string());
            }
            let Some(name) = prefix.last().cloned() else {
                return;
            };
            out.push(UseLeaf {
                bind: Bind::Name(name),
                written: written(&prefix, None),
                path: Raw {
                    segs: prefix,
                    leading,
                },
                span: n.ident.span(),
            });
        }
        UseTree::Rename(r) => {
            if r.ident != "self" {
                prefix.push(r.ident.to_string());
            }
            let bind = if r.rename == "_" {
                Bind::Nothing
            } else {
                Bind::Name(r.rename.to_string())
            };
            out.push(UseLeaf {
                bind,
                written: written(&prefix, Some(&format!(" as {}", r.rename))),
                path: Raw {
                    segs: prefix,
                    leading,
                },
                span: r.ident.span(),
            });
        }
        UseTree::Glob(g) => out.push(UseLeaf {
            bind: Bind::Glob,
            written: written(&prefix, Some("::*")),
            path: Raw {
                segs: prefix,
                leading,
            },
            span: g.star_token.span,
        }),
        UseTree::Group(g) => {
            for t in &g.items {
                flatten_into(t, prefix.clone(), leading, out);
            }
        }
    }
}

struct Module {
    /// `["crate", "a", "b"]`.
    path: Segs,
    file: PathBuf,
    parent: Option<usize>,
    children: HashMap<String, usize>,
    scope: Scope,
    /// Where `mod x;` inside this module looks for `x.rs` / `x/mod.rs`.
    child_dir: PathBuf,
}

struct Crate {
    modules: Vec<Module>,
    /// Each module that is a file of its own, with the file's syntax tree
    /// (inline modules are walked from their file).
    parsed: Vec<(usize, syn::File)>,
    /// Files a root reached (checked, or test-only and left out).
    reached: HashSet<PathBuf>,
    skip_tests: bool,
}

fn parse(files: &BTreeMap<PathBuf, String>, file: &Path) -> Result<syn::File> {
    let text = files
        .get(file)
        .with_context(|| format!("{}: no such file", file.display()))?;
    syn::parse_file(text).map_err(|e| {
        let at = e.span().start();
        anyhow::anyhow!(
            "{}:{}:{}: does not parse as Rust: {e}",
            file.display(),
            at.line,
            at.column + 1
        )
    })
}

/// A `#[path = ".."]` attribute's value.
fn path_attr(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// Whether a file is a `mod.rs` (its `mod x;` are beside it, as a crate
/// root's are).
fn is_mod_rs(file: &Path) -> bool {
    file.file_name().is_some_and(|n| n == "mod.rs")
}

impl Crate {
    /// A crate root (`orphan`: a file no module declares, checked as if
    /// it were `x.rs` of a module `x`, so its `mod y;` is `x/y.rs`).
    fn add_root(
        &mut self,
        files: &BTreeMap<PathBuf, String>,
        root: &Path,
        orphan: bool,
    ) -> Result<()> {
        let parsed = parse(files, root)?;
        self.reached.insert(root.to_path_buf());
        let dir = if orphan && !is_mod_rs(root) {
            root.with_extension("")
        } else {
            root.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        let id = self.new_module(vec!["crate".into()], root, None, dir);
        self.collect(files, id, &parsed.items, false)?;
        self.parsed.push((id, parsed));
        Ok(())
    }

    fn new_module(
        &mut self,
        path: Segs,
        file: &Path,
        parent: Option<usize>,
        child_dir: PathBuf,
    ) -> usize {
        self.modules.push(Module {
            path,
            file: file.to_path_buf(),
            parent,
            children: HashMap::new(),
            scope: Scope::default(),
            child_dir,
        });
        self.modules.len() - 1
    }

    /// Records what `items` (module `id`'s) define and import, and follows
    /// its `mod`s. `test_only`: inside a left-out test module (files are
    /// marked reached, nothing is recorded).
    fn collect(
        &mut self,
        files: &BTreeMap<PathBuf, String>,
        id: usize,
        items: &[Item],
        test_only: bool,
    ) -> Result<()> {
        for item in items {
            if !test_only {
                self.modules[id].scope.add_item(item, self.skip_tests);
            }
            let Item::Mod(m) = item else { continue };
            let skipped = test_only || (self.skip_tests && is_test_only(&m.attrs));
            let name = m.ident.to_string();
            let parent_dir = self.modules[id].child_dir.clone();
            let mut path = self.modules[id].path.clone();
            path.push(name.clone());
            match &m.content {
                Some((_, inner)) => {
                    let file = self.modules[id].file.clone();
                    let child = self.new_module(path, &file, Some(id), parent_dir.join(&name));
                    if !skipped {
                        self.modules[id].children.insert(name, child);
                    }
                    self.collect(files, child, inner, skipped)?;
                }
                None => {
                    let here = self.modules[id].file.clone();
                    let candidates = match path_attr(&m.attrs) {
                        Some(p) => vec![here.parent().unwrap_or(Path::new("")).join(p)],
                        None => vec![
                            parent_dir.join(format!("{name}.rs")),
                            parent_dir.join(&name).join("mod.rs"),
                        ],
                    };
                    let Some(file) = candidates.iter().find(|c| files.contains_key(*c)) else {
                        bail!(
                            "{}: `mod {name};`: none of {} exists",
                            here.display(),
                            candidates
                                .iter()
                                .map(|c| c.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    };
                    let parsed = parse(files, file)?;
                    self.reached.insert(file.clone());
                    let child_dir = if is_mod_rs(file) {
                        file.parent().map(Path::to_path_buf).unwrap_or_default()
                    } else {
                        file.with_extension("")
                    };
                    let child = self.new_module(path, file, Some(id), child_dir);
                    if !skipped {
                        self.modules[id].children.insert(name, child);
                    }
                    self.collect(files, child, &parsed.items, skipped)?;
                    if !skipped {
                        self.parsed.push((child, parsed));
                    }
                }
            }
        }
        Ok(())
    }

    fn root_of(&self, mut m: usize) -> usize {
        while let Some(p) = self.modules[m].parent {
            m = p;
        }
        m
    }

    /// Every path `p`, written in module `m` under the block scopes
    /// `blocks` (innermost last), may name.
    fn resolve(&self, m: usize, blocks: &[&Scope], p: &Raw) -> Vec<Segs> {
        let mut out = Vec::new();
        self.resolve_into(m, blocks, p, 0, &mut HashSet::new(), &mut out);
        out.sort();
        out.dedup();
        out
    }

    /// `seen`: what this resolution already looked up (an import cycle
    /// ends, and no lookup is made twice); `hops`: imports followed so far
    /// (a glob met again through itself, `use std::*` then `std::..`,
    /// would grow the path for ever).
    fn resolve_into(
        &self,
        m: usize,
        blocks: &[&Scope],
        p: &Raw,
        hops: u32,
        seen: &mut Seen,
        out: &mut Vec<Segs>,
    ) {
        if p.segs.is_empty() || p.leading || hops > MAX_HOPS {
            out.push(p.segs.clone());
            return;
        }
        if !seen.insert((m, blocks.len(), p.segs.clone())) {
            return;
        }
        let (first, rest) = (&p.segs[0], &p.segs[1..]);
        match first.as_str() {
            "crate" | "$crate" => return self.walk(self.root_of(m), rest, hops, seen, out),
            "self" => return self.walk(m, rest, hops, seen, out),
            "super" => {
                let parent = self.modules[m].parent.unwrap_or(m);
                return self.walk(parent, rest, hops, seen, out);
            }
            "Self" => return out.push(p.segs.clone()),
            _ => {}
        }
        // Innermost block first, then the module.
        for i in (0..=blocks.len()).rev() {
            let (scope, outer) = match i.checked_sub(1) {
                Some(b) => (blocks[b], &blocks[..b]),
                None => (&self.modules[m].scope, &blocks[..0]),
            };
            if let Some(target) = scope.names.get(first) {
                return self.resolve_into(m, outer, &target.join(rest), hops + 1, seen, out);
            }
            if scope.items.contains(first) {
                return out.push(self.local(m, &p.segs));
            }
            if i == 0
                && let Some(&child) = self.modules[m].children.get(first)
            {
                return self.walk(child, rest, hops, seen, out);
            }
            // No glob brings in a crate of the sysroot (`use std::*`,
            // then `std::..`, is std itself).
            if !SYSROOT.contains(&first.as_str()) {
                for g in &scope.globs {
                    self.resolve_into(m, outer, &g.join(&p.segs), hops + 1, seen, out);
                }
            }
        }
        // The extern prelude (`std`, a dependency) or the std prelude.
        out.push(p.segs.clone());
    }

    fn local(&self, m: usize, segs: &[String]) -> Segs {
        let mut path = self.modules[m].path.clone();
        path.extend(segs.iter().cloned());
        path
    }

    /// What `rest` names, relative to module `m` (after `crate::a::`).
    fn walk(&self, m: usize, rest: &[String], hops: u32, seen: &mut Seen, out: &mut Vec<Segs>) {
        let Some((seg, tail)) = rest.split_first() else {
            return out.push(self.modules[m].path.clone());
        };
        let module = &self.modules[m];
        match seg.as_str() {
            "super" => return self.walk(module.parent.unwrap_or(m), tail, hops, seen, out),
            "self" => return self.walk(m, tail, hops, seen, out),
            _ => {}
        }
        if let Some(&child) = module.children.get(seg) {
            return self.walk(child, tail, hops, seen, out);
        }
        if let Some(target) = module.scope.names.get(seg) {
            return self.resolve_into(m, &[], &target.join(tail), hops + 1, seen, out);
        }
        out.push(self.local(m, rest));
        if !module.scope.items.contains(seg) {
            for g in &module.scope.globs {
                self.resolve_into(m, &[], &g.join(rest), hops + 1, seen, out);
            }
        }
    }
}

/// The crates every crate can name.
const SYSROOT: &[&str] = &["std", "core", "alloc"];

/// How many imports one resolution follows (re-exports of re-exports are
/// rarely more than two).
const MAX_HOPS: u32 = 8;

/// Lookups one resolution made: (module, block depth, path).
type Seen = HashSet<(usize, usize, Segs)>;

/// Phase two: every path in one file's code, resolved and judged.
struct Checker<'a> {
    krate: &'a Crate,
    policy: &'a dyn Policy,
    file: &'a Path,
    module: usize,
    /// Block scopes, innermost last.
    blocks: Vec<Scope>,
    out: &'a mut BTreeSet<Finding>,
}

impl Checker<'_> {
    fn skip(&self, attrs: &[Attribute]) -> bool {
        self.policy.skip_tests() && is_test_only(attrs)
    }

    fn candidates(&self, raw: &Raw) -> Vec<Segs> {
        let blocks: Vec<&Scope> = self.blocks.iter().collect();
        self.krate.resolve(self.module, &blocks, raw)
    }

    /// One finding per rule a path breaks (through its first candidate
    /// that breaks it).
    fn judge(&mut self, raw: &Raw, glob: bool, span: Span, written: String) {
        let mut rules = HashSet::new();
        for resolved in self.candidates(raw) {
            if let Some(ban) = self.policy.path(&resolved, glob)
                && rules.insert(ban.rule)
            {
                let at = span.start();
                let mut resolved = resolved.join("::");
                if glob {
                    resolved.push_str("::*");
                }
                self.out.insert(Finding {
                    file: self.file.to_path_buf(),
                    line: at.line,
                    column: at.column + 1,
                    written: written.clone(),
                    resolved,
                    ban,
                });
            }
        }
    }

    fn judge_path(&mut self, raw: Raw, span: Span) {
        let written = format!(
            "{}{}",
            if raw.leading { "::" } else { "" },
            raw.segs.join("::")
        );
        self.judge(&raw, false, span, written);
    }

    fn fn_attrs(&mut self, attrs: &[Attribute]) {
        for a in attrs {
            let resolved = self.candidates(&raw_of(a.path()));
            if let Some(ban) = self.policy.fn_attr(a, &resolved) {
                let at = a.pound_token.span.start();
                let written = match &a.meta {
                    Meta::Path(p) => format!("#[{}]", raw_of(p).segs.join("::")),
                    Meta::List(l) => {
                        format!("#[{}({})]", raw_of(&l.path).segs.join("::"), l.tokens)
                    }
                    Meta::NameValue(nv) => format!("#[{} = ..]", raw_of(&nv.path).segs.join("::")),
                };
                self.out.insert(Finding {
                    file: self.file.to_path_buf(),
                    line: at.line,
                    column: at.column + 1,
                    written,
                    // Nothing to add when it is what was written.
                    resolved: if resolved.contains(&raw_of(a.path()).segs) {
                        String::new()
                    } else {
                        resolved.first().map(|r| r.join("::")).unwrap_or_default()
                    },
                    ban,
                });
            }
        }
    }

    /// `a::b` sequences in a macro's tokens.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        let is_colons = |i: usize| {
            matches!((trees.get(i), trees.get(i + 1)),
                (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                    if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
        };
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(g) => {
                    if g.delimiter() != Delimiter::None || !g.stream().is_empty() {
                        self.scan_tokens(g.stream());
                    }
                    i += 1;
                }
                TokenTree::Ident(_) | TokenTree::Punct(_) => {
                    let leading = is_colons(i);
                    let start = if leading { i + 2 } else { i };
                    let mut segs = Vec::new();
                    let mut j = start;
                    let mut span = None;
                    while let Some(TokenTree::Ident(id)) = trees.get(j) {
                        span.get_or_insert(id.span());
                        segs.push(id.to_string());
                        if is_colons(j + 1) {
                            j += 3;
                        } else {
                            j += 1;
                            break;
                        }
                    }
                    match span {
                        Some(span) if !segs.is_empty() => {
                            self.judge_path(Raw { segs, leading }, span);
                            i = j;
                        }
                        _ => i += 1,
                    }
                }
                TokenTree::Literal(_) => i += 1,
            }
        }
    }

    fn in_block<R>(&mut self, stmts: &[Stmt], f: impl FnOnce(&mut Self) -> R) -> R {
        let mut scope = Scope::default();
        for s in stmts {
            if let Stmt::Item(item) = s {
                scope.add_item(item, self.policy.skip_tests());
            }
        }
        self.blocks.push(scope);
        let r = f(self);
        self.blocks.pop();
        r
    }
}

impl<'ast> Visit<'ast> for Checker<'_> {
    fn visit_item(&mut self, i: &'ast Item) {
        if self.skip(item_attrs(i)) {
            return;
        }
        match i {
            Item::Mod(m) => {
                // A `mod x;` file is its own entry in `parsed`.
                if m.content.is_none() {
                    return;
                }
                // A module inside a function body is not in the tree:
                // it is checked in the function's scope.
                let Some(&child) = self.krate.modules[self.module]
                    .children
                    .get(&m.ident.to_string())
                else {
                    return visit::visit_item(self, i);
                };
                let outer = std::mem::replace(&mut self.module, child);
                let blocks = std::mem::take(&mut self.blocks);
                visit::visit_item(self, i);
                self.blocks = blocks;
                self.module = outer;
            }
            Item::Fn(f) => {
                self.fn_attrs(&f.attrs);
                visit::visit_item(self, i);
            }
            _ => visit::visit_item(self, i),
        }
    }

    fn visit_impl_item(&mut self, i: &'ast ImplItem) {
        let attrs = match i {
            ImplItem::Const(c) => &c.attrs,
            ImplItem::Fn(f) => &f.attrs,
            ImplItem::Type(t) => &t.attrs,
            ImplItem::Macro(m) => &m.attrs,
            _ => return visit::visit_impl_item(self, i),
        };
        if self.skip(attrs) {
            return;
        }
        if let ImplItem::Fn(f) = i {
            self.fn_attrs(&f.attrs);
        }
        visit::visit_impl_item(self, i);
    }

    fn visit_trait_item(&mut self, i: &'ast TraitItem) {
        let attrs = match i {
            TraitItem::Const(c) => &c.attrs,
            TraitItem::Fn(f) => &f.attrs,
            TraitItem::Type(t) => &t.attrs,
            TraitItem::Macro(m) => &m.attrs,
            _ => return visit::visit_trait_item(self, i),
        };
        if self.skip(attrs) {
            return;
        }
        visit::visit_trait_item(self, i);
    }

    fn visit_stmt(&mut self, s: &'ast Stmt) {
        if let Stmt::Local(l) = s
            && self.skip(&l.attrs)
        {
            return;
        }
        visit::visit_stmt(self, s);
    }

    fn visit_block(&mut self, b: &'ast syn::Block) {
        self.in_block(&b.stmts, |v| visit::visit_block(v, b));
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        for leaf in flatten_use(&u.tree, Vec::new(), u.leading_colon.is_some()) {
            let glob = matches!(leaf.bind, Bind::Glob);
            self.judge(&leaf.path, glob, leaf.span, leaf.written);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if let Some(first) = p.segments.first() {
            let span = p
                .leading_colon
                .as_ref()
                .map(|c| c.spans[0])
                .unwrap_or_else(|| first.ident.span());
            self.judge_path(raw_of(p), span);
        }
        visit::visit_path(self, p);
    }

    /// `<T>::f` and `<T as Trait>::f`: `T::f`.
    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        if let Some(q) = &e.qself
            && let Type::Path(tp) = &*q.ty
            && tp.qself.is_none()
        {
            let mut raw = raw_of(&tp.path);
            raw.segs.extend(
                e.path
                    .segments
                    .iter()
                    .skip(q.position)
                    .map(|s| s.ident.to_string()),
            );
            self.judge_path(raw, q.lt_token.span);
        }
        visit::visit_expr_path(self, e);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        self.scan_tokens(m.tokens.clone());
    }

    /// Attributes are not code (`#[cfg(test)]`, `#[derive]`, docs).
    fn visit_attribute(&mut self, _: &'ast Attribute) {}
}
