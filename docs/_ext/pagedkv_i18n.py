"""Make the text that Breathe renders from Doxygen comments translatable.

Sphinx extracts (and later translates) a text element only when it knows where the element came
from: ``sphinx.util.nodes.is_translatable`` skips every element without ``node.source`` as a
"built-in message". Breathe creates its paragraphs (briefs, details, ``\\param`` and ``\\return``
text, struct member docs) without a source, and so does Sphinx's own field-list transform for
the C++ domain's "Parameters" lists. Upstream: breathe-doc/breathe issue #832.

This transform runs before Sphinx's i18n ``Locale`` transform (priority 20) and gives every text
element that has no source the document's own source path, and the line of its nearest numbered
ancestor. Only elements inside C++ object descriptions and Breathe's file/section containers are
touched, so nothing else in a page changes its translation behaviour.

Relies on a Sphinx internal: the versions are pinned in docs/requirements.txt and
scripts/docs.sh checks after every gettext build that a Doxygen ``\\brief`` reached the catalogs.
"""

import logging

from docutils import nodes
from sphinx import addnodes
from sphinx.locale import init as init_locale
from sphinx.transforms import SphinxTransform
from sphinx.util.i18n import docname_to_domain
from sphinx.util.logging import get_node_location


def _inside_api_text(node: nodes.Node) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, addnodes.desc_content):
            return True
        if isinstance(parent, nodes.container) and "pagedkv-api-file" in parent.get("classes", ()):
            return True
        if isinstance(parent, nodes.container) and "breathe-sectiondef" in parent.get("classes", ()):
            return True
        parent = parent.parent
    return False


def _nearest_line(node: nodes.Node) -> int | None:
    parent = node.parent
    while parent is not None:
        if getattr(parent, "line", None):
            return parent.line
        parent = parent.parent
    return None


class FillSourceOfApiText(SphinxTransform):
    """Give Breathe's text elements a source so that gettext extracts and translates them."""

    default_priority = 5  # before sphinx.transforms.i18n.Locale (20)

    def apply(self, **kwargs) -> None:
        source = self.document["source"]
        for node in self.document.findall(nodes.TextElement):
            if node.source or isinstance(node, nodes.Inline):
                continue
            if isinstance(node, (addnodes.desc_signature, addnodes.desc_name)):
                continue  # signatures are code, never translated
            if not _inside_api_text(node):
                continue
            node.source = source
            if not node.line:
                node.line = _nearest_line(node) or 1


class KeepSourceListingsOutOfCatalogs(SphinxTransform):
    """The generated source listings (docs/_generated/sources/) hold only code and a file name:
    nothing to translate, so they get no catalog at all."""

    default_priority = 4

    def apply(self, **kwargs) -> None:
        if not self.env.docname.startswith("docs/_generated/sources/"):
            return
        for node in self.document.findall(nodes.TextElement):
            node["translatable"] = False


class TranslateMathBlocks(SphinxTransform):
    """Put the translated LaTeX of a display-math block into the page.

    Sphinx's Locale transform translates a literal-type node (math blocks included) by parsing
    "::" followed by the indented msgstr, which is reStructuredText's literal-block marker. Under
    MyST that text parses as a paragraph "::", and the formula vanishes from the zh_CN page
    (a translation identical to the msgid is skipped, which is why only formulas with
    translated word labels, like \\text{字节数}, were hit). Here the msgstr replaces the
    formula's text before Locale runs, and the node is marked as already handled."""

    default_priority = 19  # before sphinx.transforms.i18n.Locale (20)

    def apply(self, **kwargs) -> None:
        if not self.config.language or self.config.language == "en":
            return
        domain = docname_to_domain(self.env.docname, self.config.gettext_compact)
        dirs = [self.env.srcdir / directory for directory in self.config.locale_dirs]
        catalog, has_catalog = init_locale(dirs, self.config.language, domain)
        if not has_catalog:
            return
        for node in list(self.document.findall(nodes.math_block)):
            msgid = node.rawsource or node.astext()
            msgstr = catalog.gettext(msgid)
            if msgstr and msgstr != msgid:
                node.rawsource = msgstr
                node.children = []
                node += nodes.Text(msgstr)
            node["translatable"] = False  # Locale leaves it alone


class _DropLinkCountWarningsOfApiText(logging.Filter):
    """Doxygen links (`validate_swap_blocks()` in a \\brief) are cross-references that the msgid
    does not show: the msgid is the plain text. A translation of such a paragraph therefore has
    no link, and Sphinx warns "inconsistent term references" (fatal under -W). On the API pages
    a translated Doxygen paragraph may drop its links (the zh_CN page shows the names as plain
    text); on every other page the warning stays, because there the msgid shows the markup."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "inconsistent term references" not in str(record.msg):
            return True
        location = getattr(record, "location", None)
        if isinstance(location, nodes.Node):
            location = get_node_location(location)
        location = str(location or "")
        return not ("/docs/api/" in location or "/docs/_generated/api_" in location)


def setup(app):
    logging.getLogger("sphinx.sphinx.transforms.i18n").addFilter(_DropLinkCountWarningsOfApiText())
    app.add_transform(KeepSourceListingsOutOfCatalogs)
    app.add_transform(FillSourceOfApiText)
    app.add_transform(TranslateMathBlocks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
