"""Tesla vehicles (and energy sites) through the Tesla Fleet API: a simulator of the Fleet
API and its OAuth server, the tokens kept in the vault, a thin client and the
``SteeredCharger`` adapter of one car."""
