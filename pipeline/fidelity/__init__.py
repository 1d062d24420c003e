"""How faithful label sources are to people: agreement with human judgments (:mod:`~.agreement`, its statistics in
:mod:`~.correlation`), the fitted ensemble of sources (:mod:`~.fitted_ensemble`: model, JSON, cross-validation) and
``bcls labels fit`` (:mod:`~.fit`)."""
