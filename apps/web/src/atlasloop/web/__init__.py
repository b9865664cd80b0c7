"""AtlasLoop's web page (issue #22): a deployable of its own that serves the annotator's and the
reviewer's views and calls the services over gRPC with the signed-in person's own token, like any
viewer. The browser holds only a sealed session cookie, never a service credential."""
