"""The report's page: an executed notebook rendered by nbconvert to one self-contained HTML file."""
from __future__ import annotations

import re
from pathlib import Path

from dmtrack.io import atomic_write_text

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL | re.IGNORECASE)


def render_html(executed: Path, html: Path, appendix_md: str = "") -> Path:
    """Render an executed notebook to a self-contained page: inputs hidden, images embedded, no scripts, no stderr.

    nbconvert's lab template loads require.js, MathJax and mermaid from a CDN; the report needs
    none of them (tables are HTML, figures are PNGs), so every <script> is removed and the page
    loads nothing from the network. `appendix_md` is added as a last markdown cell.
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(executed), as_version=4)
    for cell in nb.cells:  # stderr is where libraries warn (timm's import of tqdm.auto in a kernel without
        # ipywidgets: "TqdmWarning: IProgress not found"): never the reader's business; the executed notebook keeps it
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.get("name") == "stderr")]
    if appendix_md:
        nb.cells.append(nbformat.v4.new_markdown_cell(appendix_md))
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": "DMTrack reproduction report"}})
    body = _SCRIPT.sub("", body)
    atomic_write_text(Path(html), body)
    return Path(html)


