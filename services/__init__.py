"""Business logic of Chekar Payments Ops, one room per domain (see ARCHITECTURE.md).

Nothing here imports Streamlit, FastAPI or the command line: views/, api/ and cli/ call in.
"""
