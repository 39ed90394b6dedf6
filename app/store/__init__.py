"""The app's state, one concept per module; `app.state` re-exports what the pages use.

    files     where checkpoints are (pretrained and upload folders), file names, headers and cards, content hashes
    settings  the Models page's kernel-settings box: choices, parsing, canonical cache keys
    loading   a path or an upload -> LoadResult (never raises); the process-wide cache of loaded checkpoints
    session   the models this browser session has loaded (st.session_state)
    link      the page's URL (?model= / ?path=): loading what a link names, writing the loaded models back
    caches    kernels at a length, the report's records, fitted curves, generated tasks (shared by every session)
    runtime   device, torch threads, and the warm-up thread

Nothing here imports torch or sgconv_core's heavy modules at import time: the Models page renders without them.
"""
