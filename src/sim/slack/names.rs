//! Names for simulated people: plain lists, combined by the seeded generator.

pub const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Dennis", "Frances",
    "John", "Radia", "Leslie", "Tony", "Niklaus", "Katherine", "Linus", "Guido", "Bjarne", "Hedy",
    "Claude", "Annie", "Tim", "Vint", "Shafi", "Sophie", "Yukihiro", "Anders", "Rob", "Joan",
];

pub const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson",
    "Ritchie", "Allen", "Backus", "Perlman", "Lamport", "Hoare", "Wirth", "Johnson", "Torvalds",
    "Rossum", "Stroustrup", "Lamarr", "Shannon", "Easley", "Berners-Lee", "Cerf", "Goldwasser",
    "Wilson", "Matsumoto", "Hejlsberg", "Pike", "Clarke",
];

/// Custom statuses people set, with how long they usually last (minutes; 0 = until cleared).
pub const STATUSES: &[(&str, &str, i64)] = &[
    ("In a meeting", ":calendar:", 30),
    ("Lunch", ":taco:", 45),
    ("Commuting", ":bus:", 40),
    ("Focus time", ":headphones:", 90),
    ("Out sick", ":face_with_thermometer:", 0),
    ("On vacation", ":palm_tree:", 0),
    ("Working remotely", ":house_with_garden:", 0),
    ("Reviewing PRs", ":eyes:", 60),
];

pub const COLORS: &[&str] = &["9f69e7", "4bbe2e", "e7392d", "3c989f", "e0a729", "235e5b", "684b6c", "5b89d5"];
