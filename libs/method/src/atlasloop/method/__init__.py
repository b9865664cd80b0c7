"""The method as a library: the published attention step (``reference``, with its dense oracle
``reference_dense``), AtlasLoop's improved scorers (``improved``, ``plausibility``), attention
``regions``, budgeted ``selection``, ``case_scoring`` in either mode, ``detection`` against ground
truth, ``simulate``-d members with known errors, and the published scripts' folder layout
(``published_layout``). NumPy and SciPy only: no gRPC, no object store, no torch.
"""
