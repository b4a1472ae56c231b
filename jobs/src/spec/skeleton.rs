//! The shape of a job file before its nodes are read: which sections and
//! node names exist and where, and whether each node is a table. These
//! visitors accept any value, so a wrong shape becomes a located message
//! rather than serde's first error.

use std::fmt;
use std::ops::Range;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::read::{from_toml, missing_node, read_one, SECTIONS};
use crate::diagnostic::Diagnostic;

/// A node found by the skeleton pass.
pub(crate) struct NodeRef {
    pub(crate) section: &'static str,
    pub(crate) name: Spanned<String>,
    /// The span of the node's table (for std tables, header to last value).
    pub(crate) span: Range<usize>,
}

/// Sections, node names and their positions; unknown top-level keys.
pub(crate) struct Skeleton {
    pub(crate) job: Option<Range<usize>>,
    pub(crate) nodes: Vec<NodeRef>,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl<'de> Deserialize<'de> for Skeleton {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SkeletonVisitor;

        impl<'de> Visitor<'de> for SkeletonVisitor {
            type Value = Skeleton;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a job file")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skeleton, A::Error> {
                let mut skeleton = Skeleton {
                    job: None,
                    nodes: Vec::new(),
                    diagnostics: Vec::new(),
                };
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    if key.get_ref() == "job" {
                        let value = map.next_value::<Spanned<IgnoredAny>>()?;
                        skeleton.job = Some(value.span());
                    } else if let Some(section) =
                        SECTIONS.iter().find(|section| **section == key.get_ref())
                    {
                        // Not `Spanned<Section>`: toml 0.8 cannot give a span to a
                        // value read with `deserialize_any`.
                        let span = key.span();
                        match map.next_value::<Section>()? {
                            Section::Nodes(nodes) => {
                                skeleton.nodes.extend(nodes.into_iter().map(|(name, span)| {
                                    NodeRef {
                                        section,
                                        name,
                                        span,
                                    }
                                }))
                            }
                            Section::NotATable => skeleton.diagnostics.push(Diagnostic::new(
                                span,
                                format!(
                                    "`{section}` must be a table of named {section}, like `[{section}.NAME]`"
                                ),
                            )),
                        }
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        skeleton.diagnostics.push(Diagnostic::new(
                            key.span(),
                            format!(
                                "unknown key `{}`, expected one of `job`, `sources`, `filters`, `windows`, `sinks`",
                                key.get_ref()
                            ),
                        ));
                    }
                }
                Ok(skeleton)
            }
        }

        deserializer.deserialize_map(SkeletonVisitor)
    }
}

/// The value of a section key: its nodes' names and table spans.
enum Section {
    Nodes(Vec<(Spanned<String>, Range<usize>)>),
    NotATable,
}

impl<'de> Deserialize<'de> for Section {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SectionVisitor;

        impl<'de> Visitor<'de> for SectionVisitor {
            type Value = Section;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Section, A::Error> {
                let mut nodes = Vec::new();
                while let Some(name) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<Spanned<IgnoredAny>>()?;
                    nodes.push((name, value.span()));
                }
                Ok(Section::Nodes(nodes))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Section, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Section::NotATable)
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Section, E> {
                Ok(Section::NotATable)
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Section, E> {
                Ok(Section::NotATable)
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Section, E> {
                Ok(Section::NotATable)
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Section, E> {
                Ok(Section::NotATable)
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Section, E> {
                Ok(Section::NotATable)
            }
        }

        deserializer.deserialize_any(SectionVisitor)
    }
}

/// Checks that a node is a table (not `name = 5`, not `[[section.name]]`):
/// serde would otherwise say something confusing about the first key it
/// expected.
pub(crate) fn check_is_table(text: &str, node: &NodeRef) -> Result<(), Diagnostic> {
    struct IsTable(bool);

    impl<'de> Deserialize<'de> for IsTable {
        fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(IsTableVisitor)
        }
    }

    struct IsTableVisitor;

    impl<'de> Visitor<'de> for IsTableVisitor {
        type Value = IsTable;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IsTable, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(IsTable(true))
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<IsTable, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(IsTable(false))
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<IsTable, E> {
            Ok(IsTable(false))
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<IsTable, E> {
            Ok(IsTable(false))
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<IsTable, E> {
            Ok(IsTable(false))
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<IsTable, E> {
            Ok(IsTable(false))
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<IsTable, E> {
            Ok(IsTable(false))
        }
    }

    let name = node.name.get_ref();
    match read_one::<IsTable>(text, node.section, Some(name)) {
        Ok(Some(IsTable(true))) => Ok(()),
        Ok(Some(IsTable(false))) => Err(Diagnostic::new(
            node.name.span(),
            format!(
                "`{name}` must be a table, like `[{section}.{name}]`",
                section = node.section
            ),
        )),
        Ok(None) => Err(missing_node(node)),
        Err(error) => Err(from_toml(&error, node.span.clone(), node.name.span())),
    }
}
