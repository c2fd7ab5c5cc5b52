"""After the search: storage, listing, best trials, the ensemble, the export bundle, plots."""
