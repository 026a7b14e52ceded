//! The book's internal links: every chapter SUMMARY.md lists exists, every
//! page is listed (mdBook renders only listed pages), and every relative
//! link names a listed page and, after `#`, a heading on it. A link out of
//! `book/src` would be dead in the rendered book, so it is refused too.

use pulldown_cmark::{Event, Parser, Tag, TagEnd};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// A heading's id as mdBook makes it: lower case, whitespace to `-`,
/// anything but letters, digits, `-` and `_` dropped; a repeated id gets
/// `-1`, `-2`, ….
fn anchor(text: &str) -> String {
    text.chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_ascii_lowercase())
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// One page: its headings' ids and its links (destination, as written).
struct Page {
    anchors: BTreeSet<String>,
    links: Vec<String>,
    images: Vec<String>,
}

fn read_page(markdown: &str) -> Page {
    let mut anchors = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut links = Vec::new();
    let mut images = Vec::new();
    let mut heading: Option<String> = None;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => {
                let id = anchor(&heading.take().unwrap_or_default());
                let n = seen.entry(id.clone()).or_insert(0);
                anchors.insert(if *n == 0 { id } else { format!("{id}-{n}") });
                *n += 1;
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::Start(Tag::Link { dest_url, .. }) => links.push(dest_url.to_string()),
            Event::Start(Tag::Image { dest_url, .. }) => images.push(dest_url.to_string()),
            _ => {}
        }
    }
    Page {
        anchors,
        links,
        images,
    }
}

/// `path` relative to `base`, with `.` and `..` resolved lexically.
fn resolve(base: &Path, path: &str) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    for c in Path::new(path).components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn pages(dir: &Path, under: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            pages(&path, under, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path.strip_prefix(under).unwrap().to_path_buf());
        }
    }
}

#[test]
fn every_internal_link_reaches_a_listed_page_and_heading() {
    let src = pvi_tests::root().join("book/src");
    let summary = read_page(&fs::read_to_string(src.join("SUMMARY.md")).unwrap());
    let listed: BTreeSet<PathBuf> = summary.links.iter().map(PathBuf::from).collect();
    let mut problems = Vec::new();
    let mut all = Vec::new();
    pages(&src, &src, &mut all);
    for page in &listed {
        if !src.join(page).is_file() {
            problems.push(format!(
                "SUMMARY.md lists {}, which does not exist",
                page.display()
            ));
        }
    }
    let parsed: BTreeMap<PathBuf, Page> = all
        .iter()
        .map(|p| {
            (
                p.clone(),
                read_page(&fs::read_to_string(src.join(p)).unwrap()),
            )
        })
        .collect();
    for (path, page) in &parsed {
        if path != Path::new("SUMMARY.md") && !listed.contains(path) {
            problems.push(format!(
                "{} is not in SUMMARY.md, so mdBook does not render it",
                path.display()
            ));
        }
        for image in page.images.iter().filter(|i| !i.contains("://")) {
            let found = resolve(path.parent().unwrap_or(Path::new("")), image)
                .is_some_and(|f| src.join(f).is_file());
            if !found {
                problems.push(format!(
                    "{}: image `{image}` is not a file under book/src",
                    path.display()
                ));
            }
        }
        for link in &page.links {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = link.split_once('#').unwrap_or((link, ""));
            let target = if file.is_empty() {
                Some(path.clone())
            } else {
                resolve(path.parent().unwrap_or(Path::new("")), file)
            };
            let Some(target) = target.filter(|t| listed.contains(t)) else {
                problems.push(format!(
                    "{}: `{link}` is not a page of the book (links out of book/src are dead once rendered)",
                    path.display()
                ));
                continue;
            };
            if !fragment.is_empty() && !parsed[&target].anchors.contains(fragment) {
                problems.push(format!(
                    "{}: `{link}`: {} has no heading with id `{fragment}`",
                    path.display(),
                    target.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        listed.len() >= 10,
        "SUMMARY.md lists only {} pages",
        listed.len()
    );
}

#[test]
fn anchors_are_made_as_mdbook_makes_them() {
    assert_eq!(
        anchor("When the hypervisor misbehaves"),
        "when-the-hypervisor-misbehaves"
    );
    assert_eq!(anchor("`pvi check`: errors"), "pvi-check-errors");
    let page = read_page("# A\n\n## A\n\n[x](#a-1)\n");
    assert!(page.anchors.contains("a") && page.anchors.contains("a-1"));
    assert_eq!(page.links, ["#a-1"]);
}
