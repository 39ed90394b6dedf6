"""kernelscope's Streamlit app: ``streamlit run app/main.py`` from the repository root.

Pages (``app/views/``) are short scripts over ``sgconv_core`` and ``analysis``; shared state, loading and
caching live in :mod:`app.state`, shared widgets in :mod:`app.ui`.
"""
