"""``marketpipe dashboard``: a web dashboard for people, on Streamlit.

``store`` reads the hot store with bounded queries, ``health`` asks Prometheus, ``charts``
turns both into Vega-Lite charts (Altair), ``app`` is the Streamlit script and ``server``
starts it."""
