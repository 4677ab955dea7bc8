"""Services: the components Skyline runs. They never import each other (the web app mounting
the flux router is the one exception); what two share lives in a lower layer."""
