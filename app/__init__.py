"""Kizashi's Streamlit app: run loading, pure render components and thin pages."""
