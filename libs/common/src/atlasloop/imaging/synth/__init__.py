"""Synthetic abdominal CT phantoms with known ground truth, from sites with domain shift.

``anatomy`` places the nine classes and the surrounding tissue as smoothly deformed shapes in
patient millimetres; ``sites`` holds the acquisition profiles (contrast phase, noise, intensity
calibration, field of view, slice thickness, stored orientation); ``phantom`` renders one case;
``cohort`` writes many in the AbdomenAtlas layout.
"""
