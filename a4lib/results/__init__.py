"""What runs show, for the notebooks and the report: numbers from run directories (``analysis``,
``inside``), figures (``plots``) and notebook output (``display``, ``inside_display``). Nothing here
trains; the notebooks hold the words.

    from a4lib.results import analysis, display, plots
"""
