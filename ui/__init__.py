"""Streamlit helpers shared by the pages: the sidebar model, charts, source expanders.

UI only: every number comes from minitx.
"""
