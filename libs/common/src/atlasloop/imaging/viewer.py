"""Files a desktop viewer opens: 3D Slicer colour tables (``.ctbl``) and a scene (``.mrml``) that
loads a case's CT, label maps and attention heatmaps with the right colours and overlays.

Colour tables are Slicer's text format, one ``index name R G B A`` line per entry. The scene is
MRML as Slicer 5 writes it: storage nodes name the files (relative to the scene), display nodes
the colour tables, data nodes reference both (``references="display:...;storage:..."``), and the
three slice views show the CT in the background, the first heatmap in the foreground and the
label map to edit as their label layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from atlasloop.imaging.labels import ORGAN_COLORS, ORGANS

LABEL_TABLE = "AtlasLoop.ctbl"
HEAT_TABLE = "AtlasLoopHeat.ctbl"
SLICER_VERSION = "Slicer5.6.2"
FILE_COLOR_TYPE = "14"  # vtkMRMLColorTableNode::File


def label_color_table() -> str:
    lines = ["# AtlasLoop label colours for 3D Slicer (index name R G B A)", "0 background 0 0 0 0"]
    lines += [f"{label} {name} {' '.join(map(str, ORGAN_COLORS[name]))} 255" for label, name in ORGANS.items()]
    return "\n".join(lines) + "\n"


def heat_color_table(lut: np.ndarray) -> str:
    """A 256-entry table from an (256, 3) RGB lookup table in 0..255; entry 0 is transparent, so a
    heatmap overlays the CT only where attention is."""
    if lut.shape != (256, 3):
        raise ValueError(f"a heat table needs 256 RGB entries, got {lut.shape}")
    lines = ["# AtlasLoop attention heat for 3D Slicer (index name R G B A); 0 = no attention"]
    for index, (r, g, b) in enumerate(np.clip(np.rint(lut), 0, 255).astype(int)):
        lines.append(f"{index} heat{index} {r} {g} {b} {0 if index == 0 else 255}")
    return "\n".join(lines) + "\n"


def parse_color_table(text: str) -> dict[int, tuple[str, tuple[int, int, int, int]]]:
    """index -> (name, RGBA), as Slicer reads a ``.ctbl``; refuses a malformed line."""
    entries = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 6:
            raise ValueError(f"colour table line {number}: expected 'index name R G B A', got {line!r}")
        index, name, *rgba = parts
        values = tuple(int(v) for v in rgba)
        if not all(0 <= v <= 255 for v in values):
            raise ValueError(f"colour table line {number}: colour values outside 0..255")
        entries[int(index)] = (name, (values[0], values[1], values[2], values[3]))
    return entries


@dataclass(frozen=True)
class SceneVolume:
    """One file of the scene: ``kind`` is ``ct``, ``labels`` or ``heat``."""

    name: str
    file: str
    kind: str
    visible: bool = True


def slicer_scene(volumes: Sequence[SceneVolume], window: tuple[float, float] = (40.0, 400.0)) -> str:
    """The MRML text of a scene holding ``volumes`` (exactly one ``ct``); the first visible label
    map and heatmap are the slice views' label and foreground layers."""
    cts = [v for v in volumes if v.kind == "ct"]
    if len(cts) != 1 or any(v.kind not in ("ct", "labels", "heat") for v in volumes):
        raise ValueError("a scene holds exactly one CT and any number of label maps and heatmaps")
    root = ElementTree.Element("MRML", version=SLICER_VERSION, userTags="")
    tables = {}
    for n, (table, name) in enumerate(((LABEL_TABLE, "AtlasLoop"), (HEAT_TABLE, "AtlasLoopHeat")), start=1):
        _node(root, "ColorTableStorage", f"vtkMRMLColorTableStorageNode{n}", f"{name} storage", fileName=table)
        tables[table] = _node(
            root,
            "ColorTable",
            f"vtkMRMLColorTableNodeAtlasLoop{n}",
            name,
            type=FILE_COLOR_TYPE,
            references=f"storage:vtkMRMLColorTableStorageNode{n};",
        )
    layers: dict[str, str] = {}
    for n, volume in enumerate(volumes, start=1):
        storage = _node(
            root,
            "VolumeArchetypeStorage",
            f"vtkMRMLVolumeArchetypeStorageNode{n}",
            f"{volume.name} storage",
            fileName=volume.file,
            useCompression="1",
            centerImage="0",
            UseOrientationFromFile="1",
        )
        visible = "true" if volume.visible else "false"
        if volume.kind == "labels":
            display = _node(
                root,
                "LabelMapVolumeDisplay",
                f"vtkMRMLLabelMapVolumeDisplayNode{n}",
                f"{volume.name} display",
                colorNodeID=tables[LABEL_TABLE],
                visibility=visible,
            )
            tag, node_id, layer = "LabelMapVolume", f"vtkMRMLLabelMapVolumeNode{n}", "labelVolume"
        else:
            heat = volume.kind == "heat"
            level, width = (127.5, 255.0) if heat else window
            display = _node(
                root,
                "VolumeDisplay",
                f"vtkMRMLScalarVolumeDisplayNode{n}",
                f"{volume.name} display",
                colorNodeID=tables[HEAT_TABLE] if heat else "vtkMRMLColorTableNodeGrey",
                window=f"{width:g}",
                level=f"{level:g}",
                autoWindowLevel="0",
                interpolate="1",
                applyThreshold="1" if heat else "0",
                lowerThreshold="1" if heat else "-32768",
                upperThreshold="32767",
                visibility=visible,
            )
            tag, node_id = "Volume", f"vtkMRMLScalarVolumeNode{n}"
            layer = "foregroundVolume" if heat else "backgroundVolume"
        _node(root, tag, node_id, volume.name, references=f"display:{display};storage:{storage};")
        if volume.visible:
            layers.setdefault(layer, node_id)
    references = "".join(f"{role}:{node};" for role, node in layers.items())
    for view in ("Red", "Yellow", "Green"):
        _node(
            root,
            "SliceComposite",
            f"vtkMRMLSliceCompositeNode{view}",
            "SliceComposite",
            singletonTag=view,
            layoutName=view,
            references=references,
            foregroundOpacity="0.5",
            labelOpacity="0.6",
            compositing="0",
        )
    ElementTree.indent(root, space=" ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


# The node types a scene of ours holds, as Slicer's MRML reader names them, and the references each
# may carry (role -> the node types it may point at).
NODE_REFERENCES: dict[str, dict[str, frozenset[str]]] = {
    "ColorTableStorage": {},
    "ColorTable": {"storage": frozenset({"ColorTableStorage"})},
    "VolumeArchetypeStorage": {},
    "VolumeDisplay": {},
    "LabelMapVolumeDisplay": {},
    "Volume": {"display": frozenset({"VolumeDisplay"}), "storage": frozenset({"VolumeArchetypeStorage"})},
    "LabelMapVolume": {
        "display": frozenset({"LabelMapVolumeDisplay"}),
        "storage": frozenset({"VolumeArchetypeStorage"}),
    },
    "SliceComposite": {
        "backgroundVolume": frozenset({"Volume"}),
        "foregroundVolume": frozenset({"Volume"}),
        "labelVolume": frozenset({"LabelMapVolume"}),
    },
}
BUILT_IN_COLORS = frozenset({"vtkMRMLColorTableNodeGrey"})


def check_scene(path: Path) -> list[str]:
    """What would stop 3D Slicer from loading the scene as meant; empty when nothing would.

    Checks what Slicer's MRML reader relies on: an ``MRML`` root with a version, known node types
    with unique ids, ``references`` of the form ``role:id id;`` pointing at existing nodes of the
    right type, display nodes' colour nodes existing (or built in), storage files present beside
    the scene, colour tables parsing as Slicer's ``.ctbl``, and label maps' colour tables covering
    every label in the file.
    """
    problems: list[str] = []
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        return [f"not well-formed XML: {exc}"]
    if root.tag != "MRML" or not root.get("version", "").startswith("Slicer"):
        problems.append('the root element is not <MRML version="Slicer...">')
    nodes: dict[str, ElementTree.Element] = {}
    for node in root:
        node_id = node.get("id", "")
        if node.tag not in NODE_REFERENCES:
            problems.append(f"unknown node type <{node.tag}>")
        if not node_id or node_id in nodes:
            problems.append(f"<{node.tag}> has a missing or repeated id {node_id!r}")
        nodes[node_id] = node
    for node_id, node in nodes.items():
        for entry in filter(None, node.get("references", "").split(";")):
            role, _, targets = entry.partition(":")
            allowed = NODE_REFERENCES.get(node.tag, {}).get(role)
            if allowed is None:
                problems.append(f"{node_id}: unknown reference role {role!r}")
                continue
            for target in targets.split():
                if target not in nodes or nodes[target].tag not in allowed:
                    problems.append(f"{node_id}: {role} points at {target!r}, not a {'/'.join(sorted(allowed))}")
        color = node.get("colorNodeID")
        if color is not None and color not in BUILT_IN_COLORS and nodes.get(color, node).tag != "ColorTable":
            problems.append(f"{node_id}: colour node {color!r} does not exist")
        file_name = node.get("fileName")
        if file_name is not None and not (path.parent / file_name).is_file():
            problems.append(f"{node_id}: file {file_name!r} is not beside the scene")
        elif file_name is not None and node.tag == "ColorTableStorage":
            try:
                parse_color_table((path.parent / file_name).read_text())
            except ValueError as exc:
                problems.append(f"{file_name}: {exc}")
    if not problems:
        problems += _uncoloured_labels(path.parent, nodes)
    return problems


def _references(node: ElementTree.Element) -> dict[str, str]:
    return {
        role: targets.split()[0]
        for role, _, targets in (entry.partition(":") for entry in node.get("references", "").split(";") if entry)
    }


def _uncoloured_labels(folder: Path, nodes: dict[str, ElementTree.Element]) -> list[str]:
    """Label ids in a label map that its colour table has no entry for."""
    from atlasloop.imaging.volume import load_nifti

    problems = []
    for node_id, node in nodes.items():
        if node.tag != "LabelMapVolume":
            continue
        refs = _references(node)
        try:
            table_node = nodes[nodes[refs["display"]].get("colorNodeID", "")]
            table_file = nodes[_references(table_node)["storage"]].get("fileName", "")
            labels_file = nodes[refs["storage"]].get("fileName", "")
        except KeyError as exc:
            problems.append(f"{node_id}: needs a display with a file colour table and a storage node ({exc})")
            continue
        table = parse_color_table((folder / table_file).read_text())
        labels = load_nifti(folder / labels_file).array
        missing = sorted(set(np.unique(labels).astype(int).tolist()) - set(table))
        if missing:
            problems.append(f"{node_id}: label ids {missing} have no colour in {table_file}")
    return problems


def _node(root: ElementTree.Element, tag: str, node_id: str, name: str, **attributes: str) -> str:
    ElementTree.SubElement(root, tag, {"id": node_id, "name": name, **attributes})
    return node_id
