"""AtlasLoop benchmarks (``make bench``): measured side by side in one run, medians, with memory."""
