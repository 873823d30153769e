"""The dashboard's server: Streamlit's own (Starlette) server running app.py, plus the two routes
that set and clear the sign-in cookie (dashboard/session_cookie.py). Start it with
`streamlit run dashboard_server.py`; `streamlit run app.py` works too, but then a reload signs out."""

from streamlit.starlette import App

from dashboard.session_cookie import ROUTES

app = App("app.py", routes=ROUTES)
