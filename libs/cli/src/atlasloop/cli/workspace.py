"""A pulled case on disk: what ``atlasloop pull`` writes and ``atlasloop revise`` reads back.

```
DIR/labels.nii.gz          the label map to correct (the lease's starting version); save over it
DIR/ai_labels.nii.gz       the ensemble's label map, for comparison
DIR/ct.nii.gz              the CT in HU
DIR/attention_<organ>.nii.gz   one attention heatmap per organ on the CT's grid (0-255)
DIR/regions.json           the attention regions, most heat first
DIR/AtlasLoop.ctbl, DIR/AtlasLoopHeat.ctbl   colour tables of the labels and of the heat
DIR/scene.mrml             a 3D Slicer scene that opens all of it with those colours
DIR/README.txt             this, for the person at the viewer
DIR/.atlasloop-pull.json   the lease, the versions and when the case was pulled
```
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from atlasloop.imaging.viewer import SceneVolume, slicer_scene

MANIFEST = ".atlasloop-pull.json"
LABELS = "labels.nii.gz"
AI_LABELS = "ai_labels.nii.gz"
CT = "ct.nii.gz"
REGIONS = "regions.json"
SCENE = "scene.mrml"
README = "README.txt"


@dataclass(frozen=True)
class Pulled:
    case_id: str
    lease_id: str  # "" for a case pulled to look at, not to revise
    label_version: str  # what labels.nii.gz held when pulled
    ai_label_version: str
    organs: tuple[str, ...]  # to revise, most salient first
    pulled_at: str  # UTC, ISO 8601

    def minutes_since_pull(self, now: datetime | None = None) -> float:
        started = datetime.fromisoformat(self.pulled_at)
        return max(0.0, ((now or datetime.now(UTC)) - started).total_seconds() / 60)


def write_manifest(folder: Path, pulled: Pulled) -> None:
    (folder / MANIFEST).write_text(json.dumps(asdict(pulled) | {"organs": list(pulled.organs)}, indent=2))


def read_manifest(folder: Path) -> Pulled | None:
    path = folder / MANIFEST
    if not path.exists():
        return None
    document = json.loads(path.read_text())
    return Pulled(**(document | {"organs": tuple(document["organs"])}))


def write_scene(folder: Path, heatmaps: list[tuple[str, str]]) -> Path:
    """The Slicer scene: CT, the labels to edit (shown), the AI labels (hidden) and one heatmap per
    organ, the first (most salient) shown over the CT."""
    volumes = [
        SceneVolume("CT", CT, "ct"),
        SceneVolume("labels (edit me)", LABELS, "labels"),
        SceneVolume("AI labels", AI_LABELS, "labels", visible=False),
    ]
    volumes += [
        SceneVolume(f"attention {organ}", file, "heat", visible=n == 0) for n, (organ, file) in enumerate(heatmaps)
    ]
    path = folder / SCENE
    path.write_text(slicer_scene(volumes))
    return path


def readme(pulled: Pulled, heatmaps: list[tuple[str, str]]) -> str:
    revise = (
        f"  atlasloop revise {pulled.lease_id} {{folder}}\n"
        if pulled.lease_id
        else "  (pulled without a lease: to revise it, take it with 'atlasloop next' and pull the lease)\n"
    )
    organs = ", ".join(pulled.organs) or "any"
    return f"""AtlasLoop case {pulled.case_id}, pulled {pulled.pulled_at}
{"lease " + pulled.lease_id if pulled.lease_id else "no lease"}; organs to check, most salient first: {organs}

Open scene.mrml in 3D Slicer (File > Add Data, or drag it onto Slicer): the CT, the label map to
correct, the AI label map (hidden) and one attention heatmap per organ (the first one shown) load
with AtlasLoop's colours.

Files
  {LABELS:<26}the label map to correct (label version {pulled.label_version}); save your edits over it
  {AI_LABELS:<26}the ensemble's label map (version {pulled.ai_label_version}), for comparison
  {CT:<26}the CT in Hounsfield units
  {"attention_<organ>.nii.gz":<26}where the models disagree or are unsure (0-255), on the CT's grid
  {REGIONS:<26}the attention regions, most heat first: organ, box in millimetres (RAS), volume, heat
  {"AtlasLoop.ctbl":<26}label colours (ids: 1 aorta, 2 gall_bladder, 3 kidney_left, 4 kidney_right,
  {"":<26}5 liver, 6 pancreas, 7 postcava, 8 spleen, 9 stomach)
  {"AtlasLoopHeat.ctbl":<26}heat colours (0 is transparent)
  {SCENE:<26}the 3D Slicer scene
  {MANIFEST:<26}what was pulled and when (revise reads it)

Correct only what the heatmaps point at, save labels.nii.gz, then send it back from a terminal:
{revise.format(folder=".")}
The organs you changed are found by comparing with the version you pulled, and the minutes since
you pulled the case are counted as your time (pass --organs or --minutes to say otherwise).
"""


def heatmap_files(names: list[str]) -> list[tuple[str, str]]:
    """(organ, file) of the streamed heatmaps."""
    return [
        (name.removeprefix("attention_").removesuffix(".nii.gz"), name)
        for name in names
        if name.startswith("attention_") and name.endswith(".nii.gz")
    ]
